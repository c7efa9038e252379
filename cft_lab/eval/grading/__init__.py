"""Answer extraction and equivalence for the paper's benchmarks, in three modes.

Benchmarks: ``math``, ``math500``, ``minerva_math``, ``gsm8k``, ``olympiadbench``, ``aime24``, ``amc23``,
``theoremqa`` (the math harness, docs/protocol.md §4.2, §4.5, §9) and ``gpqa``, ``mmlu_pro`` (multiple choice, §4.3,
§4.4).

Modes (compare only numbers graded in the same mode, docs/pitfalls.md#evaluation):

============ ==================================================================================================
``paper``    the CFT harness exactly, leniencies and quirks included: its ``strip_string`` (unit-word list that
             mangles ``\\sec x``, TheoremQA ``(a)`` -> ``()``, emptied golds that then match nearly anything), its
             grader (``round_to_two_decimals`` that rounds to one decimal, scientific notation, right-hand-side
             split, significant-digit tolerance), letter re-extraction for A–E golds; GPQA upper-cases the output;
             MMLU-Pro scores an unanswered item against a seeded guess.
``strict``   upstream Qwen2.5-Math's grader (no CFT-only additions) with the gold-mangling cleanup fixed: unit words
             deleted only after a number, ``\\mbox{X}`` kept as ``X``, ``and`` only as a word, so TheoremQA options
             survive and no gold is empty. Upstream leniencies stay (1e-4 tolerance, gold×100 / gold÷100). GPQA:
             capital letters only, no paragraph cut; MMLU-Pro: no guess.
``math_verify`` HuggingFace math-verify 0.9 ``parse`` + ``verify`` on the raw output and the raw gold, its own timeouts
             off (ours are process-level); choice benchmarks use its letter extraction.
============ ==================================================================================================

Public API::

    grade(output, gold, benchmark, mode="paper") -> bool
    grade_detail(output, gold, benchmark, mode="paper", timeout=3.0, *, n_options=None, gold_quirks=()) -> Verdict
    grade_batch(rows, modes=("paper", "strict", "math_verify"), timeout=3.0, workers=None, progress=True)
        -> list[dict[str, Verdict]]
    gold_answer(benchmark, record, mode="paper") -> str;  gold_answers(benchmark, record) -> {mode: gold}
    gold_quirks(benchmark, record) -> tuple[str, ...];  QUIRKS;  quirk_counts(verdicts) -> {quirk: n}
    extract_answer(output, benchmark, mode="paper") -> str;  strip_string(s, benchmark, mode="paper") -> str
    mmlu_pro_fallback(n_options) -> str;  status_counts(batch_results) -> {mode: {status: n}}
    question_suffix(benchmark, record) -> " (True or False)" | " (Yes or No)" | ""  (parse_question's addition)

Timeouts are process-level: sympy and math-verify run in a persistent child process per grading process that is
killed (SIGKILL) and replaced when an item exceeds ``timeout``; the item is then ``status="timeout"``,
``correct=False``. ``signal.alarm`` is never used.

Known divergence from the paper's run: its ``symbolic_equal`` parsed LaTeX with sympy's ANTLR parser (antlr4 4.11);
here ``latex2sympy2_extended`` stands in (cft_lab.eval.grading.equal), which can flip a few symbolic verdicts.
Output that is not a string, and gold letters outside the options, are errors, not guesses.

>>> grade("so the answer is \\\\boxed{\\\\dfrac{1}{2}}", "\\\\frac{1}{2}", "math")
True
>>> out = "The final answer is 0.12"
>>> grade(out, "0.14", "gsm8k", "paper"), grade(out, "0.14", "gsm8k", "strict")
(True, False)
"""

from cft_lab.eval.grading.choice import mmlu_pro_fallback
from cft_lab.eval.grading.core import (
    BENCHMARKS,
    QUIRKS,
    Verdict,
    extract_answer,
    grade,
    grade_detail,
    quirk_counts,
    strip_string,
)
from cft_lab.eval.grading.gold import (
    MODES,
    gold_answer,
    gold_answers,
    gold_quirks,
    question_suffix,
    raw_gold,
    suffix_for_gold,
)
from cft_lab.eval.grading.parallel import Item, grade_batch, status_counts

#: Bumped whenever a verdict can change for the same output and gold; part of every grade artefact's store key.
VERSION = "grading-v1"

__all__ = [
    "BENCHMARKS",
    "MODES",
    "QUIRKS",
    "VERSION",
    "Item",
    "Verdict",
    "extract_answer",
    "gold_answer",
    "gold_answers",
    "gold_quirks",
    "grade",
    "grade_batch",
    "grade_detail",
    "mmlu_pro_fallback",
    "question_suffix",
    "quirk_counts",
    "raw_gold",
    "suffix_for_gold",
    "status_counts",
    "strip_string",
]
