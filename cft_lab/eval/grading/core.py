"""Grading one item: ``grade_detail`` and the names around it (``Verdict``, ``QUIRKS``, ``quirk_counts``).

Contract: ``grade_detail(output, gold, benchmark, mode, timeout)`` returns a ``Verdict`` and never hangs: the
extraction and the string/number checks run in this process (bounded, linear-time work; an extracted answer over
``LONG_ANSWER`` characters is cleaned in the worker instead), everything that can hang (sympy, math-verify) runs in
this process's symbolic worker (``worker.default_worker()``) under ``timeout`` seconds per call (a paper-mode True
that a CFT-only leniency decided costs a second call: upstream's verdict, to attribute the quirk). A timeout gives
``status="timeout"``, an exception in grading ``status="error"``, both with ``correct=False`` (the paper harness
also scored a timeout as wrong). Unknown benchmarks or modes raise ``ValueError``.

``gold`` is the mode's gold from ``gold_answer(benchmark, record, mode)``, or the dict of all three from
``gold_answers`` (the mode picks its own); for GPQA / MMLU-Pro it is the option letter. An empty or ``None``
output is wrong without further work (the harness maps it to a ``None`` prediction).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from cft_lab.eval.grading.choice import CHOICE_BENCHMARKS, CHOICE_LETTERS, extract_choice, grade_choice
from cft_lab.eval.grading.equal import CFT_ONLY_TAGS, fast_equal
from cft_lab.eval.grading.extract import (
    MATH_BENCHMARKS,
    SKIP_UNIT,
    extract_math,
    letter_gold_prediction,
    raw_math_answer,
)
from cft_lab.eval.grading.gold import MODES
from cft_lab.eval.grading.normalize import normalize
from cft_lab.eval.grading.worker import GradeTimeout, WorkerError, default_worker

BENCHMARKS = MATH_BENCHMARKS + CHOICE_BENCHMARKS

#: every quirk name a Verdict (or ``gold_quirks``) can carry -> what it means
QUIRKS: dict[str, str] = {
    "unit_word_deleted": "strip_string's unit-word list deleted a standalone word that is no unit after a number, "
    "in the gold or the prediction (\\sec x -> \\x, \\frac{c}{a} -> \\frac{}{}, "
    "1\\pm\\sqrt{19} -> 1\\\\sqrt{19})",
    "theoremqa_option_collapsed": "a TheoremQA option gold (a)/(c)/(d) collapsed to '()', which every option "
    "prediction also collapses to",
    "gold_emptied": "the paper's cleanup emptied the gold (\\text{east}, \\mbox{Saturday}); an empty gold matches "
    "any prediction without a capital A-E",
    "mbox_deleted": "\\mbox{...} was deleted with its content",
    "and_deleted": "'and' was cut out of a longer word",
    "letter_gold": "the gold is a letter A-E, so a letter was re-extracted from the whole output (math_eval.py)",
    "round_one_decimal": "the CFT grader's round_to_two_decimals (which rounds to ONE decimal) decided a True "
    "verdict that the tolerance check would not give",
    "percent": "only gold/100 or gold*100 matched the prediction (upstream leniency, paper and strict)",
    "sci_notation": "the CFT-only scientific-notation reading (a\\times10^{n}, 3e8, 10^{n}) decided a True verdict",
    "rhs_split": "the CFT-only comparison of the right-hand sides of '=' decided a True verdict",
    "sig_digits": "the CFT-only is_numbers_equal_post (tolerance from significant digits) decided a True verdict",
    "lowercase_letter": "GPQA: the output is upper-cased, so a lowercase word ('a') was scored as the letter",
    "gpqa_icl_split": "GPQA: 'the answer is' occurred twice, so only the first paragraph was searched and the "
    "letter changed",
    "fallback_guess": "MMLU-Pro: no letter was found and the item was scored against the seeded guess",
}


@dataclass(frozen=True)
class Verdict:
    """One item graded in one mode."""

    correct: bool
    pred: str
    status: str = "ok"  # "ok" | "timeout" | "error"
    error: str | None = None
    quirks: tuple[str, ...] = ()


def quirk_counts(verdicts) -> dict[str, int]:
    """How many verdicts each quirk touched (every name of ``QUIRKS``, zeros included)."""
    counts = Counter(q for v in verdicts for q in set(v.quirks))
    return {name: counts.get(name, 0) for name in QUIRKS}


def _check(benchmark: str, mode: str) -> None:
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {BENCHMARKS}")
    if mode not in MODES:
        raise ValueError(f"unknown grading mode {mode!r}; expected one of {MODES}")


def _mode_gold(gold, benchmark: str, mode: str) -> str:
    if isinstance(gold, Mapping):
        if mode not in gold:
            raise ValueError(f"{benchmark}: the gold dict has no {mode!r} entry (keys {sorted(gold)})")
        gold = gold[mode]
    if not isinstance(gold, str):
        raise ValueError(f"{benchmark}: gold must be a string, got {type(gold).__name__}")
    return gold


def strip_string(s: str, benchmark: str, mode: str = "paper") -> str:
    """The mode's answer cleanup: the harness's ``strip_string`` (paper), its corrected variant (strict), or
    math-verify's LaTeX normalisation (math_verify). Minerva answers keep their units."""
    _check(benchmark, mode)
    if mode == "math_verify":
        from latex2sympy2_extended.math_normalization import NormalizationConfig, normalize_latex

        return normalize_latex(
            str(s),
            NormalizationConfig(
                basic_latex=True, units=True, malformed_operators=True, nits=True, boxed="all", equations=False
            ),
        )
    return normalize(s, skip_unit=benchmark in SKIP_UNIT, strict=mode == "strict")


def extract_answer(output: str, benchmark: str, mode: str = "paper", timeout: float = 3.0) -> str:
    """The prediction a mode grades: cleaned math answer, or the option letter ("" when none)."""
    _check(benchmark, mode)
    if mode == "math_verify":
        letters = CHOICE_LETTERS.get(benchmark)
        return default_worker().call("mv_extract", (output, letters), timeout)
    if benchmark in CHOICE_BENCHMARKS:
        return extract_choice(output, benchmark, mode)
    return extract_math(output, benchmark, strict=mode == "strict")


# A raw answer longer than this is cleaned in the worker (under the timeout) instead of here: strip_string costs
# about 1000 regex passes over the answer, fine for real answers (< 200 chars), seconds for a 50 KB one.
LONG_ANSWER = 2000


def prepare_math(output: str, gold: str, benchmark: str, paper: bool) -> tuple[str, list[str]]:
    """(the prediction the grader compares with ``gold``, pred-side quirks): extraction, both ``strip_string``
    passes, and the letter-gold rewrite."""
    quirks: list[str] = []
    pred = extract_math(output, benchmark, strict=not paper, quirks=quirks if paper else None)
    scored = letter_gold_prediction(pred, gold, output)
    if scored != pred and gold:
        quirks.append("letter_gold")
    if paper and gold == "":
        quirks.append("gold_emptied")
    return scored, quirks


def _grade_math(output: str, gold: str, benchmark: str, paper: bool, timeout: float) -> Verdict:
    worker = default_worker()
    scored, quirks, tags = "", [], []
    try:
        if len(raw_math_answer(output)) > LONG_ANSWER:
            scored, quirks, correct, tags = worker.call("grade_math", (output, gold, benchmark, paper), timeout)
            quirks, tags = list(quirks), list(tags)
        else:
            scored, quirks = prepare_math(output, gold, benchmark, paper)
            correct = fast_equal(scored, gold, paper, tags)
            if correct is None:
                correct, child_tags = worker.call("math_equal", (scored, gold, paper), timeout)
                tags = list(child_tags)
        if correct and paper and CFT_ONLY_TAGS.intersection(tags):
            try:  # did a CFT-only step decide it? only if upstream's grader says False
                if worker.call("math_equal", (scored, gold, False), timeout)[0]:
                    tags = [t for t in tags if t not in CFT_ONLY_TAGS]
            except GradeTimeout:
                pass  # upstream could not confirm within the budget: the leniency stays the decider
    except GradeTimeout as e:
        return Verdict(False, scored, "timeout", f"{benchmark}: {e}", tuple(dict.fromkeys(quirks)))
    except WorkerError as e:
        return Verdict(False, scored, "error", f"{benchmark}: {e}"[:2000], tuple(dict.fromkeys(quirks)))
    return Verdict(bool(correct), scored, "ok", None, tuple(dict.fromkeys(quirks + (tags if correct else []))))


def grade_detail(
    output,
    gold,
    benchmark: str,
    mode: str = "paper",
    timeout: float = 3.0,
    *,
    n_options: int | None = None,
    gold_quirks: tuple[str, ...] = (),
) -> Verdict:
    """Grade one output in one mode (module doc). ``n_options`` is MMLU-Pro's option count (needed in paper mode
    when no letter can be extracted); ``gold_quirks`` (from ``gold_quirks(benchmark, record)``) are added to the
    verdict's quirks in paper mode."""
    _check(benchmark, mode)
    try:
        gold = _mode_gold(gold, benchmark, mode)
    except ValueError as e:
        return Verdict(False, "", "error", str(e))
    extra = tuple(gold_quirks) if mode == "paper" else ()
    unknown = set(extra) - set(QUIRKS)
    if unknown:
        raise ValueError(f"{benchmark}: unknown gold quirk names {sorted(unknown)}")
    if benchmark in CHOICE_BENCHMARKS and (len(gold) != 1 or gold not in CHOICE_LETTERS[benchmark]):
        return Verdict(
            False,
            "",
            "error",
            f"{benchmark}: gold must be one option letter of {CHOICE_LETTERS[benchmark]}, got {gold!r}",
        )
    if not output:
        return Verdict(False, "", "ok", None, extra)
    try:
        if mode == "math_verify":
            letters = CHOICE_LETTERS.get(benchmark)
            correct, pred = default_worker().call("math_verify", (output, gold, letters), timeout)
            return Verdict(bool(correct), pred, "ok", None, ())
        if benchmark in CHOICE_BENCHMARKS:
            correct, pred, quirks = grade_choice(output, gold, benchmark, mode, n_options)
            return Verdict(correct, pred, "ok", None, tuple(dict.fromkeys(quirks + extra)))
        v = _grade_math(output, gold, benchmark, mode == "paper", timeout)
    except GradeTimeout as e:
        return Verdict(False, "", "timeout", f"{benchmark}: {e}", extra)
    except (WorkerError, ValueError, RecursionError, MemoryError, OverflowError) as e:
        return Verdict(False, "", "error", f"{benchmark} ({mode}): {type(e).__name__}: {e}"[:2000], extra)
    if extra:
        v = Verdict(v.correct, v.pred, v.status, v.error, tuple(dict.fromkeys(v.quirks + extra)))
    return v


def grade(output, gold, benchmark: str, mode: str = "paper") -> bool:
    """``grade_detail(...).correct``: False also on timeout or error (use ``grade_detail`` to tell them apart)."""
    return grade_detail(output, gold, benchmark, mode).correct
