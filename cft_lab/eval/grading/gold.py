"""Gold answers from the raw shipped benchmark records, per grading mode (docs/protocol.md §9 "Gold answers").

Contract: ``gold_answer(benchmark, record, mode)`` returns the gold string that ``grade(..., mode)`` expects.

``paper``: what the CFT harness finally compares against. Its ``math_eval.py`` parses the gold once
(``parse_ground_truth``) and ``evaluate.py`` parses it again from the stored sample, so the number of
``strip_string`` passes differs by benchmark; this module reproduces that exactly:

============== ========================================================= ==========================
benchmark      source field                                              cleanup passes
============== ========================================================= ==========================
math           last ``\\boxed{}`` of ``solution`` (``extract_answer``)   1
math500        last ``\\boxed{}`` of ``solution`` (not ``answer``)       3
minerva_math   last ``\\boxed{}`` of ``solution``, units kept            1 (skip_unit) + ``\\neq``…
gsm8k          text after ``####`` (thousands commas stay)               2
olympiadbench  ``final_answer[0]`` with ``$`` stripped                   2
aime24, amc23  ``answer`` (``str()`` first: amc23 stores ``27.0``)        2
theoremqa      ``answer``                                                2
============== ========================================================= ==========================

Paper mode keeps the harness's gold quirks, including golds that end up empty (``\\text{east}``,
``\\mbox{Saturday}``): those come back as ``""`` and are listed by ``gold_quirks`` (``gold_emptied``).
``strict``: the same passes with the corrected ``strip_string``; an empty result is a ``ValueError``.
``math_verify``: the raw gold before any cleanup (``$…$`` kept for OlympiadBench), for math-verify to parse.
A record whose gold field is missing or has nothing to parse raises ``ValueError`` naming benchmark and field.

GPQA and MMLU-Pro golds are letters that depend on the option order, which the benchmark registry fixes with a
seeded shuffle; ``gold_answer`` refuses them.
"""

from __future__ import annotations

from cft_lab.eval.grading.extract import MATH_BENCHMARKS, SKIP_UNIT, raw_math_answer
from cft_lab.eval.grading.normalize import normalize

MODES = ("paper", "strict", "math_verify")
_PASSES = {
    "math": 1,
    "math500": 3,
    "minerva_math": 1,
    "gsm8k": 2,
    "olympiadbench": 2,
    "aime24": 2,
    "amc23": 2,
    "theoremqa": 2,
}
_OPTION_GOLDS = ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)")


def _check(benchmark: str, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown grading mode {mode!r}; expected one of {MODES}")
    if benchmark in ("gpqa", "mmlu_pro"):
        raise ValueError(
            f"{benchmark}: the gold is an option letter that depends on the seeded option order; "
            "the benchmark registry computes it (gold_answer only parses math-harness golds)"
        )
    if benchmark not in MATH_BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; math-harness benchmarks are {MATH_BENCHMARKS}")


def _field(benchmark: str, record: dict, name: str):
    if name not in record or record[name] is None:
        raise ValueError(f"{benchmark}: record has no {name!r} field (keys: {sorted(record)})")
    return record[name]


def raw_gold(benchmark: str, record: dict) -> str:
    """The gold text before any cleanup: boxed content, text after ``####``, ``final_answer[0]`` or ``answer``."""
    _check(benchmark, "paper")
    if benchmark in ("math", "math500", "minerva_math"):
        solution = str(_field(benchmark, record, "solution")).strip()
        if "boxed" not in solution:
            raise ValueError(f"{benchmark}: field 'solution' has no \\boxed{{}} answer")
        return raw_math_answer(solution)
    if benchmark == "gsm8k":
        answer = str(_field(benchmark, record, "answer"))
        if answer.count("####") != 1:
            raise ValueError(f"gsm8k: field 'answer' must contain '####' exactly once, found {answer.count('####')}")
        return answer.split("####")[1]
    if benchmark == "olympiadbench":
        final = _field(benchmark, record, "final_answer")
        if not isinstance(final, list) or not final:
            raise ValueError(f"olympiadbench: field 'final_answer' must be a non-empty list, got {final!r}")
        return str(final[0])
    return str(_field(benchmark, record, "answer"))


def _cleaned(benchmark: str, record: dict, strict: bool, quirks: list | None) -> str:
    skip = benchmark in SKIP_UNIT
    raw = raw_gold(benchmark, record)
    if benchmark == "olympiadbench":
        raw = raw.strip("$")
    gold = raw
    for _ in range(_PASSES[benchmark]):
        gold = normalize(gold, skip_unit=skip, strict=strict, quirks=quirks)
    if benchmark == "minerva_math":
        gold = gold.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    return gold


def gold_answer(benchmark: str, record: dict, mode: str = "paper") -> str:
    """The gold string for ``grade(output, gold, benchmark, mode)`` (module doc)."""
    _check(benchmark, mode)
    if mode == "math_verify":
        gold = raw_gold(benchmark, record).strip()
        if not gold.strip("$ "):
            raise ValueError(f"{benchmark}: the gold field is empty")
        return gold
    if not raw_gold(benchmark, record).strip():
        raise ValueError(f"{benchmark}: the gold field is empty")
    gold = _cleaned(benchmark, record, strict=mode == "strict", quirks=None)
    if mode == "strict" and not gold:
        raise ValueError(
            f"{benchmark}: the gold cleans to an empty string even in strict mode (raw {raw_gold(benchmark, record)!r})"
        )
    return gold


def gold_answers(benchmark: str, record: dict) -> dict[str, str]:
    """``{mode: gold_answer(benchmark, record, mode)}`` for every mode: the per-mode golds ``grade_batch`` takes."""
    return {mode: gold_answer(benchmark, record, mode) for mode in MODES}


def question_suffix(benchmark: str, record: dict) -> str:
    """What the harness's ``parse_question`` appends to the question: " (True or False)" when the gold is true/false,
    " (Yes or No)" when it is yes/no (case-insensitive), else "". Only TheoremQA has such golds (76 + 40)."""
    return suffix_for_gold(gold_answer(benchmark, record, "paper"))


def suffix_for_gold(gold: str) -> str:
    """The ``parse_question`` hint for a paper-mode gold.

    >>> suffix_for_gold("True"), suffix_for_gold("no"), suffix_for_gold("3")
    (' (True or False)', ' (Yes or No)', '')
    """
    gold = gold.strip().lower()
    if gold in ("true", "false"):
        return " (True or False)"
    if gold in ("yes", "no"):
        return " (Yes or No)"
    return ""


def gold_quirks(benchmark: str, record: dict) -> tuple[str, ...]:
    """The paper-mode gold quirks of one record (names from ``QUIRKS``), empty when the paper gold is clean."""
    _check(benchmark, "paper")
    found: list[str] = []
    paper = _cleaned(benchmark, record, strict=False, quirks=found)
    strict = _cleaned(benchmark, record, strict=True, quirks=None)
    if benchmark == "theoremqa" and raw_gold(benchmark, record).strip().lower() in _OPTION_GOLDS and paper == "()":
        found = [q for q in found if q != "unit_word_deleted"] + ["theoremqa_option_collapsed"]
    if paper == "":
        found.append("gold_emptied")
    if paper == strict:  # a quirk that fired but left the same gold as the corrected cleanup changed nothing
        found = []
    return tuple(dict.fromkeys(found))
