"""One record type from source to training data: :class:`Record`.

Contract
--------
A :class:`Record` is one training question with everything every arm needs (docs/protocol.md §1.2, §2): the question,
its gold answer if known, a noisy response and where it came from, the teacher's critique, verdict and own
solution, what the teacher call cost, and where the row came from. All fields are JSON-safe, and
:meth:`Record.to_dict` writes the keys that :func:`cft_lab.train.objectives.build_pairs` reads (``id, question,
response, critique, verdict, teacher_solution``), so a ``records.jsonl`` of serialised records feeds every arm
unchanged.

Lifecycle: a source (``cft_lab.data.sources``) makes records with ``status="no_teacher"`` (a released critique waits in
``meta["released_critique"]``); a teacher turns each into ``status="ok"`` (:meth:`Record.with_critique`,
:meth:`Record.with_solution`) or a recorded failure (:meth:`Record.with_failure`: ``"failed"`` or
``"budget_exhausted"``), so every request ends as a stored row (docs/pitfalls.md#data-and-teacher).

``status`` values: ``ok`` (the teacher's work is in), ``failed`` (its call failed: ``error`` says why),
``budget_exhausted`` (never called: the budget ran out), ``no_teacher`` (no teacher has run on it).

Training sets are derived from one record list with matched ids, by the objective registry
(``cft_lab.train.objectives``, the one place that knows which record an arm uses): ``sft`` uses every record,
``sft_verified`` the records whose verdict is "right", ``sft_teacher`` those with a teacher solution, ``cft`` those
with a critique; its ``arm_usage`` counts, per arm, the usable records and why the others are left out.

Validation errors name the place and the field: ``records.jsonl:12: field 'verdict': expected 'right', 'wrong'
or null, got 'yes'``.

>>> r = Record(id="q1", question="1+1?", response="3", response_correct=False)
>>> r = r.with_critique("1+1=2, not 3.\\nConclusion: wrong [END]", teacher={"name": "t"})
>>> r.verdict, r.verdict_parse, r.status
('wrong', 'tag', 'ok')
>>> Record.from_dict(r.to_dict(), "here") == r
True
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cft_lab.data.verdicts import parse_verdict

STATUSES = ("ok", "failed", "budget_exhausted", "no_teacher")
VERDICTS = ("right", "wrong")
TEACHER_KEYS = ("name", "model", "snapshot", "prompt_version", "sampling")
TOKEN_KEYS = ("prompt", "completion")


class RecordError(ValueError):
    """A record field is missing or malformed; the message names the place (``file:line``) and the field."""

    def __init__(self, where: str, field_name: str, problem: str):
        self.where, self.field, self.problem = where, field_name, problem
        super().__init__(f"{where}: field {field_name!r}: {problem}")


def _type(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _json_safe(v: Any, path: str) -> Optional[str]:
    """None if ``v`` is plain JSON (str keys, finite numbers), else where it is not."""
    if v is None or isinstance(v, (str, bool, int)):
        return None
    if isinstance(v, float):
        return None if math.isfinite(v) else f"{path}: non-finite number {v}"
    if isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            bad = _json_safe(x, f"{path}[{i}]")
            if bad:
                return bad
        return None
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                return f"{path}: non-string key {k!r}"
            bad = _json_safe(x, f"{path}.{k}")
            if bad:
                return bad
        return None
    return f"{path}: {type(v).__name__} is not JSON"


@dataclass
class Record:
    """One question with its noisy response, the teacher's work on it and its provenance (see the module doc).

    ``teacher`` is ``{"name", "model", "snapshot", "prompt_version", "sampling"}`` (name required, the others may
    be absent or null); ``tokens`` is ``{"prompt": int, "completion": int}`` summed over this record's teacher
    calls; ``source`` is ``{"name", "dataset", "revision", "config", "split", "row", "row_id"}`` as written by
    ``cft_lab.data.sources``; ``meta`` holds anything else a source keeps (e.g. ``released_critique``).
    """

    id: str
    question: str
    gold: Optional[str] = None
    response: Optional[str] = None
    response_source: str = "reference"  # "reference" | "self_generated:<model>" | a config name
    response_correct: Optional[bool] = None
    critique: Optional[str] = None
    verdict: Optional[str] = None  # "right" | "wrong" | None
    verdict_parse: Optional[str] = None  # cft_lab.data.verdicts form; None when there is no critique
    teacher_solution: Optional[str] = None
    teacher: Optional[dict] = None
    tokens: Optional[dict] = None
    cost_usd: Optional[float] = None
    status: str = "no_teacher"
    error: Optional[str] = None
    source: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check(f"record {self.id!r}")

    # ------------------------------------------------------------------ validation
    def check(self, where: str) -> None:
        """Raise :class:`RecordError` naming ``where`` and the field if any field is malformed."""

        def bad(name: str, problem: str):
            raise RecordError(where, name, problem)

        for name in ("id", "question", "response_source"):
            v = getattr(self, name)
            if not isinstance(v, str):
                bad(name, f"expected a string, got {_type(v)}")
            if not v.strip():
                bad(name, "is empty")
        for name in ("gold", "response", "critique", "teacher_solution", "error", "verdict_parse"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                bad(name, f"expected a string or null, got {_type(v)}")
        if self.response_correct is not None and not isinstance(self.response_correct, bool):
            bad("response_correct", f"expected true, false or null, got {_type(self.response_correct)}")
        if self.verdict not in (None, *VERDICTS):
            bad("verdict", f"expected 'right', 'wrong' or null, got {self.verdict!r}")
        if self.verdict is not None and self.critique is None:
            bad("verdict", "is set but there is no critique")
        if self.status not in STATUSES:
            bad("status", f"expected one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.status == "failed" and not self.error:
            bad("error", "status 'failed' needs an error message")
        if self.status == "ok" and self.teacher is None:
            bad("teacher", "status 'ok' needs the teacher that did the work")
        if self.teacher is not None:
            if not isinstance(self.teacher, dict):
                bad("teacher", f"expected an object or null, got {_type(self.teacher)}")
            extra = sorted(set(self.teacher) - set(TEACHER_KEYS))
            if extra:
                bad("teacher", f"unknown key(s) {extra}; known: {list(TEACHER_KEYS)}")
            if not isinstance(self.teacher.get("name"), str) or not self.teacher["name"]:
                bad("teacher", "needs a non-empty 'name'")
        if self.tokens is not None:
            if not isinstance(self.tokens, dict) or set(self.tokens) - set(TOKEN_KEYS):
                bad("tokens", f"expected {{'prompt': int, 'completion': int}} or null, got {self.tokens!r}")
            for k, v in self.tokens.items():
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    bad("tokens", f"{k!r} must be a non-negative integer, got {v!r}")
        if self.cost_usd is not None and (
            isinstance(self.cost_usd, bool)
            or not isinstance(self.cost_usd, (int, float))
            or not math.isfinite(self.cost_usd)
            or self.cost_usd < 0
        ):
            bad("cost_usd", f"expected a non-negative number or null, got {self.cost_usd!r}")
        for name in ("source", "meta", "teacher"):
            v = getattr(self, name)
            if name != "teacher" and not isinstance(v, dict):
                bad(name, f"expected an object, got {_type(v)}")
            problem = _json_safe(v, name)
            if problem:
                bad(name, f"not JSON-safe ({problem})")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        """A JSON-safe dict with every field (the keys ``build_pairs`` reads among them)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping, where: str) -> Record:
        """A record from :meth:`to_dict`'s output; ``where`` (e.g. ``"records.jsonl:12"``) prefixes every error.

        ``id`` and ``question`` are required; other missing fields take their defaults; unknown keys are errors.
        """
        if not isinstance(d, Mapping):
            raise RecordError(where, "<record>", f"expected an object, got {_type(d)}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise RecordError(where, unknown[0], f"unknown field (known: {', '.join(names)})")
        for required in ("id", "question"):
            if required not in d:
                raise RecordError(where, required, "missing")
        kwargs = {k: d[k] for k in names if k in d}
        for k in ("source", "meta"):
            if kwargs.get(k, {}) is None:
                raise RecordError(where, k, "expected an object, got null")
        try:
            return cls(**kwargs)
        except RecordError as e:
            raise RecordError(where, e.field, e.problem) from None

    # ------------------------------------------------------------------ the teacher's work
    def with_critique(
        self, critique: str, *, teacher: dict, tokens: Optional[dict] = None, cost_usd: Optional[float] = None
    ) -> Record:
        """A copy with the teacher's critique, its verdict read by :func:`cft_lab.data.verdicts.parse_verdict`
        (``verdict_parse`` says how, or why not), status ``ok`` and the call's tokens and cost added."""
        p = parse_verdict(critique)
        return dataclasses.replace(
            self,
            critique=critique,
            verdict=p.verdict,
            verdict_parse=p.form,
            teacher=dict(teacher),
            status="ok",
            error=None,
            tokens=_add_tokens(self.tokens, tokens),
            cost_usd=_add_cost(self.cost_usd, cost_usd),
        )

    def with_solution(
        self, solution: str, *, teacher: dict, tokens: Optional[dict] = None, cost_usd: Optional[float] = None
    ) -> Record:
        """A copy with the teacher's own solution (for ``sft_teacher``), status ``ok``, tokens and cost added."""
        return dataclasses.replace(
            self,
            teacher_solution=solution,
            teacher=dict(teacher),
            status="ok",
            error=None,
            tokens=_add_tokens(self.tokens, tokens),
            cost_usd=_add_cost(self.cost_usd, cost_usd),
        )

    def with_failure(
        self,
        status: str,
        error: str,
        *,
        teacher: Optional[dict] = None,
        tokens: Optional[dict] = None,
        cost_usd: Optional[float] = None,
    ) -> Record:
        """A copy recording a teacher call that did not give a result (``failed`` or ``budget_exhausted``)."""
        if status not in ("failed", "budget_exhausted"):
            raise ValueError(f"with_failure: status must be 'failed' or 'budget_exhausted', got {status!r}")
        return dataclasses.replace(
            self,
            status=status,
            error=error,
            teacher=dict(teacher) if teacher else self.teacher,
            tokens=_add_tokens(self.tokens, tokens),
            cost_usd=_add_cost(self.cost_usd, cost_usd),
        )


def _add_tokens(a: Optional[dict], b: Optional[dict]) -> Optional[dict]:
    if b is None:
        return a
    if a is None:
        return dict(b)
    return {k: a.get(k, 0) + b.get(k, 0) for k in TOKEN_KEYS}


def _add_cost(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if b is None:
        return a
    return b if a is None else a + b


# ---------------------------------------------------------------------- JSONL
def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write records as JSON lines (UTF-8, one record per line); returns how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
            n += 1
    return n


def read_records(path: str | Path) -> list[Record]:
    """Records from a JSONL file; a bad line fails naming ``path:line`` (1-based) and the field."""
    out, seen = [], {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(where, "<line>", f"invalid JSON ({e.msg})") from None
            r = Record.from_dict(d, where)
            if r.id in seen:
                raise RecordError(where, "id", f"duplicate id {r.id!r} (first at line {seen[r.id]})")
            seen[r.id] = lineno
            out.append(r)
    return out
