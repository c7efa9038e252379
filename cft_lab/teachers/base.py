"""The teacher interface: what a teacher is asked (``TeacherTask``) and what it answers (``TeacherResult``).

Every teacher (``openai``, ``replay``, ``testbed``) implements :class:`Teacher`: ``run(tasks)`` returns exactly one
result per task, in task order, and never raises for a per-request failure; such a task is a result with
``status="failed"`` and its error. ``status`` is one of:

* ``ok``: ``text`` holds the critique (kind ``critique``) or the teacher's own answer (kind ``answer``);
* ``failed``: ``error`` says why (after ``attempts`` tries); stored, so a rerun does not re-ask it unless told to;
* ``budget_exhausted``: never asked, because the USD budget would have been passed (not a failure; not stored).

The SFT-verified filter needs no separate kind: its verdict is the critique's ``Conclusion:`` tag (v4 App. A.1).

>>> t = TeacherTask("r1", "critique", "1+1?", "2")
>>> r = failed_result(t, "no released critique", prompt_version="released", sampling={}, cache_key="k")
>>> r.status, r.cost_usd, r.attempts
('failed', 0.0, 0)
>>> summarize([r])["failed"]
1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

STATUSES = ("ok", "failed", "budget_exhausted")


@dataclass(frozen=True)
class TeacherTask:
    """One thing to ask the teacher about one record."""

    record_id: str
    kind: str  # "critique" (docs/protocol.md §1.2) | "answer" (the teacher's own solution, GPT-4o-SFT, §2)
    question: str
    response: str | None  # the noisy response to critique; None for "answer"
    gold: str | None = None
    # Optional extra data a teacher may need and a request never contains (the testbed teacher reads a
    # ``Problem`` under "problem"); not part of any cache key.
    meta: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)
    # A request built by the caller (kind "generate": an evaluation prompt through cft_lab.eval.generation's openai
    # backend): its chat messages, sent as they are, and sampling parameters added to the teacher's own (a sample's
    # seed). Both are part of the request's cache key.
    messages: tuple[Mapping[str, str], ...] | None = field(default=None, hash=False)
    sampling: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass
class TeacherResult:
    """What a teacher answered for one task (one row of the stage's output)."""

    record_id: str
    kind: str
    status: str  # "ok" | "failed" | "budget_exhausted"
    text: str | None
    error: str | None
    model: str | None  # the model the server says answered (a snapshot name where it gives one)
    prompt_version: str
    sampling: dict
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: the model's price is unknown (never guessed)
    cache_key: str
    attempts: int
    cached: bool  # True: taken from the request cache, not asked in this run
    finish_reason: str | None = None  # "length" means the text was cut at max_tokens (no Conclusion tag)

    def to_dict(self) -> dict:
        return asdict(self)


@runtime_checkable
class Teacher(Protocol):
    name: str

    def run(
        self, tasks: list[TeacherTask], *, retry_failed: bool = False, progress: bool = True
    ) -> list[TeacherResult]: ...

    def describe(self) -> dict: ...


def failed_result(
    task: TeacherTask,
    error: str,
    *,
    prompt_version: str,
    sampling: dict,
    cache_key: str,
    model: str | None = None,
    attempts: int = 0,
    status: str = "failed",
) -> TeacherResult:
    """A result with no text: a failure (default) or ``status="budget_exhausted"``."""
    return TeacherResult(
        task.record_id,
        task.kind,
        status,
        None,
        error,
        model,
        prompt_version,
        dict(sampling),
        0,
        0,
        0.0,
        cache_key,
        attempts,
        False,
    )


def summarize(results: list[TeacherResult]) -> dict:
    """Counts by status, cached count, tokens and cost (None when any ok result has an unknown price)."""
    out: dict[str, Any] = {s: 0 for s in STATUSES}
    out["cached"] = sum(r.cached for r in results)
    for r in results:
        out[r.status] += 1
    ok = [r for r in results if r.status == "ok"]
    out["prompt_tokens"] = sum(r.prompt_tokens for r in ok)
    out["completion_tokens"] = sum(r.completion_tokens for r in ok)
    costs = [r.cost_usd for r in ok]
    out["cost_usd"] = None if any(c is None for c in costs) else round(sum(costs), 6)
    out["cost_usd_this_run"] = (
        None
        if any(r.cost_usd is None for r in ok if not r.cached)
        else round(sum(r.cost_usd for r in ok if not r.cached), 6)
    )
    out["truncated"] = sum(r.finish_reason == "length" for r in ok)
    return out


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced (used on every error string we keep or log).

    >>> redact("bad key sk-123", "sk-123")
    'bad key [REDACTED]'
    >>> redact("fine", None)
    'fine'
    """
    if secret:
        text = text.replace(secret, "[REDACTED]")
    return text
