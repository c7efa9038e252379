"""Row parsers, one per schema: a row (a dict) of a source becomes a :class:`~cft_lab.data.records.Record`, or a
:class:`~cft_lab.data.sources.SourceError` naming the place and the column (schemas: the package doc).

:data:`PARSERS` is the literal dict from schema name to parser.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

from cft_lab.data.records import Record
from cft_lab.data.sources.errors import SourceError

if TYPE_CHECKING:
    from cft_lab.data.sources import SourceSpec

SOLUTION_MARK = "\n\nSolution:\n"
QUESTION_MARK = "Question:\n"
_METAMATH_ANSWER = re.compile(r"The answer is:[ \t]*(?P<gold>[^\n]*?)[ \t]*\Z")


def _str(
    row: dict, where: str, name: str, *, required: bool = True, nonempty: bool = True, col: Optional[str] = None
) -> Optional[str]:
    col = col or name
    if col not in row or row[col] is None:
        if required:
            raise SourceError(where, col, "missing", f"the row has: {', '.join(sorted(map(str, row)))[:200]}")
        return None
    v = row[col]
    if not isinstance(v, str):
        raise SourceError(where, col, "wrong type", f"expected a string, got {type(v).__name__}")
    if nonempty and not v.strip():
        raise SourceError(where, col, "empty")
    return v


def metamath_gold(response: str) -> Optional[str]:
    """X of a final ``The answer is: X`` line of a MetaMathQA response, else None.

    >>> metamath_gold("So 2+2=4.\\nThe answer is: 4"), metamath_gold("The answer is: 4\\nmore"), metamath_gold("x")
    ('4', None, None)
    """
    m = _METAMATH_ANSWER.search(response.rstrip())
    return m.group("gold") if m and m.group("gold") else None


def boxed_gold(solution: str) -> Optional[str]:
    """The last ``\\boxed{...}`` of a solution (braces matched), else None.

    >>> boxed_gold(r"so $\\boxed{\\frac{1}{2}}$."), boxed_gold("no box")
    ('\\\\frac{1}{2}', None)
    """
    from cft_lab.testbed.answers import extract_boxed

    g = extract_boxed(solution)
    return g.strip() if g and g.strip() else None


class SourceCtx:
    """Per-source state shared by the row parsers: the spec, provenance counters."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        self.counts: Counter = Counter()

    def source(self, row: int, row_id: Any = None) -> dict:
        s = self.spec
        return {
            "name": s.name,
            "dataset": s.path,
            "revision": s.revision if s.kind == "hub" else None,
            "config": s.config_name if s.kind == "hub" else None,
            "split": s.split if s.kind == "hub" else None,
            "row": row,
            "row_id": row_id,
        }


def _webinstruct_cft(row: dict, where: str, i: int, ctx: SourceCtx) -> Record:
    from cft_lab.prompts import CFT_INSTRUCTION

    instruction = _str(row, where, "instruction", nonempty=False)
    inp = _str(row, where, "input")
    output = _str(row, where, "output")
    head, sep, response = inp.partition(SOLUTION_MARK)
    if not sep or not head.startswith(QUESTION_MARK):
        raise SourceError(
            where, "input", "not in the Question/Solution layout", "expected 'Question:\\n...\\n\\nSolution:\\n...'"
        )
    question = head[len(QUESTION_MARK) :]
    if not question.strip():
        raise SourceError(where, "input", "empty question")
    if not response.strip():
        raise SourceError(where, "input", "empty solution")
    meta = {"released_critique": output}
    if instruction != CFT_INSTRUCTION:
        meta["instruction"] = instruction
        ctx.counts["nonstandard_instruction"] += 1
    if SOLUTION_MARK in response:
        meta["solution_mark_repeated"] = True
        ctx.counts["solution_mark_repeated"] += 1
    return Record(id=f"{ctx.spec.name}-{i}", question=question, response=response, source=ctx.source(i), meta=meta)


def _webinstruct_raw(row: dict, where: str, i: int, ctx: SourceCtx) -> Record:
    question = _str(row, where, "question")
    answer = _str(row, where, "answer")
    critique = _str(row, where, "gpt4o_answer")
    index = row.get("index")
    if index is None:
        raise SourceError(where, "index", "missing")
    if isinstance(index, bool) or not isinstance(index, int):
        raise SourceError(where, "index", "wrong type", f"expected an integer, got {type(index).__name__}")
    meta: dict = {"released_critique": critique}
    origin = _str(row, where, "source", required=False, nonempty=False)
    if origin is not None:
        meta["origin"] = origin
    cost = row.get("cost")
    if cost is not None:
        if isinstance(cost, bool) or not isinstance(cost, (int, float)):
            raise SourceError(where, "cost", "wrong type", f"expected a number, got {type(cost).__name__}")
        meta["released_cost_usd"] = cost
    return Record(
        id=f"{ctx.spec.name}-{index}", question=question, response=answer, source=ctx.source(i, index), meta=meta
    )


def _question_solution(
    row: dict,
    where: str,
    i: int,
    ctx: SourceCtx,
    *,
    question: str,
    response: str,
    meta_cols: dict[str, str],
    gold: Callable[[str], Optional[str]],
) -> Record:
    """The shape MetaMathQA and NuminaMath-CoT share: a question column, a solution column whose gold is read from
    the solution itself (counted when absent), and optional string columns kept in ``meta``."""
    q = _str(row, where, question)
    r = _str(row, where, response)
    meta = {}
    for col, key in meta_cols.items():
        v = _str(row, where, col, required=False, nonempty=False)
        if v is not None:
            meta[key] = v
    g = gold(r)
    if g is None:
        ctx.counts["gold_missing"] += 1
    return Record(id=f"{ctx.spec.name}-{i}", question=q, response=r, gold=g, source=ctx.source(i), meta=meta)


def _metamathqa(row: dict, where: str, i: int, ctx: SourceCtx) -> Record:
    return _question_solution(
        row,
        where,
        i,
        ctx,
        question="query",
        response="response",
        meta_cols={"type": "type", "original_question": "original_question"},
        gold=metamath_gold,
    )


def _numinamath_cot(row: dict, where: str, i: int, ctx: SourceCtx) -> Record:
    return _question_solution(
        row, where, i, ctx, question="problem", response="solution", meta_cols={"source": "origin"}, gold=boxed_gold
    )


def _chat_messages(row: dict, where: str, i: int, ctx: SourceCtx) -> Record:
    """A chat-format SFT row (AceMath-Instruct-Training-Data and most SFT sets on the hub): ``messages`` = a list of
    ``{"role", "content"}``; the question is the first user turn, the response the last assistant turn; an optional
    ``answer`` column is the gold."""
    messages = row.get("messages")
    if messages is None:
        raise SourceError(where, "messages", "missing")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise SourceError(where, "messages", "wrong type", "expected a list of {role, content} objects")
    users = [m.get("content") for m in messages if m.get("role") == "user"]
    assistants = [m.get("content") for m in messages if m.get("role") == "assistant"]
    if not users or not isinstance(users[0], str) or not users[0].strip():
        raise SourceError(where, "messages", "no user turn with text")
    if not assistants or not isinstance(assistants[-1], str) or not assistants[-1].strip():
        raise SourceError(where, "messages", "no assistant turn with text")
    gold = row.get("answer")
    if gold is not None and (isinstance(gold, bool) or not isinstance(gold, (str, int, float))):
        raise SourceError(where, "answer", "wrong type", f"expected a string or number, got {type(gold).__name__}")
    return Record(
        id=f"{ctx.spec.name}-{i}",
        question=users[0],
        response=assistants[-1],
        gold=None if gold is None else str(gold),
        source=ctx.source(i),
    )


def _column(row: dict, where: str, col: str, types: tuple[type, ...], expected: str, *, nullable: bool) -> Any:
    """A mapped column's value: present (and not null unless ``nullable``) and of one of ``types`` (a bool is only
    accepted where ``bool`` is listed: it is an int to Python, never a gold or an id)."""
    if col not in row or (row[col] is None and not nullable):
        raise SourceError(where, col, "missing")
    v = row[col]
    if v is not None and (not isinstance(v, types) or (isinstance(v, bool) and bool not in types)):
        raise SourceError(where, col, "wrong type", f"expected {expected}, got {type(v).__name__}")
    return v


def _local(row: dict, where: str, i: int, ctx: SourceCtx) -> Record:
    fm = ctx.spec.field_map
    question = _str(row, where, "question", col=fm["question"])
    response = _str(row, where, "response", col=fm["response"]) if "response" in fm else None
    critique = _str(row, where, "released_critique", col=fm["released_critique"]) if "released_critique" in fm else None
    gold = None
    if "gold" in fm:
        v = _column(row, where, fm["gold"], (str, int, float), "a string or number", nullable=True)
        gold = None if v is None else str(v)
    correct = None
    if "response_correct" in fm:
        correct = _column(row, where, fm["response_correct"], (bool,), "true/false/null", nullable=True)
    row_id = None
    if "id" in fm:
        row_id = _column(row, where, fm["id"], (str, int), "a string or integer", nullable=False)
        rid = str(row_id)
        if not rid.strip():
            raise SourceError(where, fm["id"], "empty")
    else:
        rid = f"{ctx.spec.name}-{i}"
    meta = {"released_critique": critique} if critique is not None else {}
    return Record(
        id=rid,
        question=question,
        response=response,
        gold=gold,
        response_correct=correct,
        source=ctx.source(i, row_id),
        meta=meta,
    )


PARSERS: dict[str, Callable[[dict, str, int, SourceCtx], Record]] = {
    "webinstruct_cft": _webinstruct_cft,
    "webinstruct_raw": _webinstruct_raw,
    "metamathqa": _metamathqa,
    "numinamath_cot": _numinamath_cot,
    "chat_messages": _chat_messages,
    "local": _local,
}
