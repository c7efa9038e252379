"""The one error type of the sources: a malformed row or source, naming the place, the field and the problem."""

from __future__ import annotations


class SourceError(ValueError):
    """A source row (or the source itself) is malformed; names the place, the field and the problem."""

    def __init__(self, where: str, field_name: str, problem: str, detail: str = ""):
        self.where, self.field, self.problem = where, field_name, problem
        self.reason = f"{field_name}: {problem}"
        super().__init__(f"{where}: field {field_name!r}: {problem}" + (f" ({detail})" if detail else ""))
