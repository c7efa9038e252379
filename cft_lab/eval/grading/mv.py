"""The ``math_verify`` grading mode: HuggingFace math-verify's extraction and equivalence, untouched.

Contract: ``mv_grade(output, gold, letters)`` returns ``(correct, pred)``. Runs inside the symbolic worker
(``cft_lab.eval.grading.worker``), which enforces the timeout, so math-verify's own signal-based timeouts are disabled
(``parsing_timeout=None``, ``timeout_seconds=None``; installed API checked: math-verify 0.9.0).

Math benchmarks (``letters=None``): the gold (the raw gold of ``gold_answer(..., "math_verify")``) is parsed as
LaTeX in ``$…$`` (OlympiadBench golds already carry their ``$``; a Python-style float such as TheoremQA's
``4e-05``, which LaTeX would read as ``4e - 5``, is first written out as a decimal); the output is parsed with
math-verify's default configuration (LaTeX and plain expressions, boxed answers preferred), and
``verify(gold, pred)`` decides. Parsed golds are cached.

Choice benchmarks (``letters="ABCD"`` or ``"ABCDEFGHIJ"``): math-verify's ``StringExtractionConfig`` over the
option letters, case-sensitive. math-verify 0.9 does not read a parenthesised or boxed letter, which is exactly
the form both prompts ask for ("the answer is (X)"), so ``(X)``, ``\\boxed{X}`` and ``\\text{X}`` are unwrapped to
``X`` first; that is the only change to the output.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify

_PY_FLOAT_RE = re.compile(r"[-+]?\d+(?:\.\d+)?[eE][-+]?\d+")


def _gold_latex(gold: str) -> str:
    g = gold.strip()
    if _PY_FLOAT_RE.fullmatch(g):
        try:
            g = format(Decimal(g), "f")
        except InvalidOperation:
            pass
    if "$" in g or "\\boxed" in g:
        return g
    return "$" + g + "$"


@lru_cache(maxsize=4096)
def _parsed_gold(gold: str) -> tuple:
    return tuple(
        parse(
            _gold_latex(gold), extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=None
        )
    )


@lru_cache(maxsize=4)
def _letter_config(letters: str) -> tuple:
    return (StringExtractionConfig(strings=tuple(letters), lowercase=False),)


def _unwrap_letters(output: str, letters: str) -> str:
    cls = "[" + letters + "]"
    output = re.sub(r"\\boxed\{\s*(?:\\text\{\s*)?(" + cls + r")\s*\}?\s*\}", r"\1", output)
    output = re.sub(r"\\text\{\s*(" + cls + r")\s*\}", r"\1", output)
    return re.sub(r"\((" + cls + r")\)", r"\1", output)


def _pred_text(parsed: list) -> str:
    if not parsed:
        return ""
    return str(parsed[-1] if isinstance(parsed[-1], str) else parsed[0])


def mv_extract(output: str, letters: str | None = None) -> str:
    """math-verify's reading of the output (what ``mv_grade`` compares), as text."""
    if letters:
        return _pred_text(
            parse(_unwrap_letters(output, letters), extraction_config=_letter_config(letters), parsing_timeout=None)
        )
    return _pred_text(parse(output, parsing_timeout=None))


def mv_grade(output: str, gold: str, letters: str | None = None) -> tuple[bool, str]:
    """``(correct, pred)`` for one item (module doc)."""
    if letters:
        config = _letter_config(letters)
        pred = parse(_unwrap_letters(output, letters), extraction_config=config, parsing_timeout=None)
        target = parse(gold, extraction_config=config, parsing_timeout=None)
    else:
        pred = parse(output, parsing_timeout=None)
        target = list(_parsed_gold(gold))
    if not pred or not target:
        return False, _pred_text(pred)
    return bool(verify(target, pred, timeout_seconds=None)), _pred_text(pred)
