"""Answer equivalence of the math harness: the CFT grader (paper mode) and upstream Qwen2.5-Math's (strict mode).

Contract: ``math_equal(prediction, reference, paper, tags)`` returns whether two cleaned answers are equal, as
``grader.math_equal`` of the CFT harness decides it (``paper=True``) or as upstream Qwen2.5-Math's decides it
(``paper=False``: the same function without the four CFT-only additions, docs/protocol.md §4.2). In order:

1. case-insensitive string equality; a letter gold A–E against the last letter of the prediction;
2. numbers (commas removed, ``x%`` read as x/100): relative tolerance 1e-4 against gold, gold/100 and gold×100;
   *paper only, first*: ``round_to_two_decimals``, which really rounds both to ONE decimal (0.12 == 0.14);
3. brackets: ``(a,b)``/``[a,b]`` stripped and compared as strings, then element-wise; matrices element-wise;
4. *paper only*: ``a\\times10^{n}`` / ``3e8`` scientific notation read as numbers;
5. equations: ``l = r`` against ``l' = r'`` via ``l - r``; ``x = v`` against ``v``;
6. *paper only*: any ``=`` on either side: compare the right-hand sides; then ``10^{n}`` read as a decimal;
7. sympy: ``symbolic_equal`` (string, ``equals``/``simplify``, equation, numeric value, matrix);
8. *paper only*: ``is_numbers_equal_post``, a tolerance from the smaller count of significant digits.

``tags`` receives, on the path that returned True only, the quirks that decided it: ``round_one_decimal``,
``percent`` (only gold/100 or gold×100 matched), ``sci_notation`` (steps 4 and 6b), ``rhs_split`` (6a),
``sig_digits`` (8). The caller (``cft_lab.eval.grading.core``) keeps a CFT-only tag only when upstream says False.

``fast_equal`` is steps 1–2 alone: string and float work that is bounded in time, so it runs in the calling process;
it returns None when they do not decide. Everything else runs in the symbolic worker process
(``cft_lab.eval.grading.worker``), which a timeout kills. sympy is imported only there.

Known divergence (stated in the package doc): the paper's ``symbolic_equal`` tries sympy's ANTLR ``parse_latex``
first, which needs antlr4 4.11 (this environment pins 4.9.3 for latex2sympy2_extended), so
``latex2sympy2_extended.latex2sympy`` without normalisation stands in for it; ``parse_expr`` is refused on text that
could reach Python builtins (``__``, ``import``, ``lambda``…), because it ``eval``s model output.

Adapted from TIGER-AI-Lab/CritiqueFineTuning ``tools/evaluate_math/grader.py`` and QwenLM/Qwen2.5-Math
``evaluation/grader.py``, derived from ZubinGou/math-evaluation-harness (MIT License, Copyright (c) 2023 Zhibin Gou),
microsoft/ToRA, openai/prm800k and the Hendrycks MATH release.

>>> fast_equal("0.12", "0.14", True, []), fast_equal("0.12", "0.14", False, [])
(True, False)
>>> tags = []; fast_equal("0.5", "50", False, tags), tags
(True, ['percent'])
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

LETTERS = ("A", "B", "C", "D", "E")
CFT_ONLY_TAGS = frozenset({"round_one_decimal", "sci_notation", "rhs_split", "sig_digits"})
_LETTER_RE = re.compile(r"\b(A|B|C|D|E)\b")
_LIST_RE = re.compile(r"(\(|\[).+(\)|\])")  # the harness uses the regex module; same pattern
_PMATRIX_SRC_RE = re.compile(r"\{.*,.*\}")
_SCI_TIMES_RE = re.compile(r"(\d+\.?\d*?)\\times10\^{?([+-]?\d+)}?")
_SCI_TIMES_BRACED_RE = re.compile(r"(\d+\.?\d*?)\\times10\^{([+-]?\d+)}")
_POW10_RE = re.compile(r"10\^{([+-]?\d+)}")
_CLEAN_FUNC_RE = re.compile(r"(\d+\.?\d*?)\\times10\^{([+-]?\d+)}\\")
_POST_SCI_RE = re.compile(r"(\d+\.?\d*?)times10\^{([+-]?\d+)}")
_UNSAFE_EXPR_RE = re.compile(
    r"__|\b(?:import|lambda|exec|eval|open|compile|globals|locals|getattr|setattr|"
    r"delattr|vars|dir|input|breakpoint|help|exit|quit)\b"
)
# 10**n for n beyond this can only end in OverflowError (float * int) in the harness's code: raise it at once
# instead of building a huge integer first (10**(10**9) would take minutes and gigabytes)
_MAX_POW10 = 400


def _pow10(exponent: int):
    if exponent > _MAX_POW10:
        raise OverflowError("int too large to convert to float")
    return 10**exponent


def choice_answer_clean(pred: str) -> str:
    """``grader.choice_answer_clean``: the last standalone letter A–E (no trigger split, unlike the parser's)."""
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    found = _LETTER_RE.findall(pred.upper())
    pred = found[-1] if found else pred.strip().strip(".")
    return pred.rstrip(".").rstrip("/")


def parse_digits(num):
    num = str(num).replace(",", "")
    try:
        return float(num)
    except Exception:
        if num.endswith("%"):
            num = num[:-1]
            if num.endswith("\\"):
                num = num[:-1]
            try:
                return float(num) / 100
            except Exception:
                pass
    return None


def is_digit(num) -> bool:
    return parse_digits(num) is not None


def numeric_equal(prediction: float, reference: float) -> bool:
    return math.isclose(reference, prediction, rel_tol=1e-4)


def round_to_two_decimals(num_str):
    """The CFT grader's helper: despite its name it rounds to ONE decimal (docs/protocol.md §4.2)."""
    try:
        return round(float(num_str.replace(",", "").replace("\\", "")), 1)
    except ValueError:
        return None


def fast_equal(
    prediction, reference, paper: bool, tags: list, include_percentage: bool = True, is_close: bool = True
) -> bool | None:
    """Steps 1–2 of ``math_equal``: True/False when they decide, None when the rest must run."""
    if prediction is None or reference is None:
        return False
    if str(prediction.strip().lower()) == str(reference.strip().lower()):
        return True
    if reference in LETTERS and choice_answer_clean(prediction) == reference:
        return True
    try:
        if is_digit(prediction) and is_digit(reference):
            if paper and round_to_two_decimals(prediction) == round_to_two_decimals(reference):
                p, r = parse_digits(prediction), parse_digits(reference)
                if not numeric_equal(p, r):
                    if include_percentage and (numeric_equal(p, r / 100) or numeric_equal(p, r * 100)):
                        tags.append("percent")
                    else:
                        tags.append("round_one_decimal")
                return True
            prediction = parse_digits(prediction)
            reference = parse_digits(reference)
            candidates = [reference / 100, reference, reference * 100] if include_percentage else [reference]
            for i, item in enumerate(candidates):
                try:
                    if numeric_equal(prediction, item) if is_close else item == prediction:
                        if include_percentage and i != 1:
                            tags.append("percent")
                        return True
                except Exception:
                    continue
            return False
    except Exception:
        pass
    if not prediction and prediction not in [0, False]:
        return False
    return None


def str_to_pmatrix(input_str: str) -> str:
    out = []
    for m in _PMATRIX_SRC_RE.findall(input_str.strip()):
        m = m.strip("{}")
        out.append(r"\begin{pmatrix}" + m.replace(",", "\\") + r"\end{pmatrix}")
    return ", ".join(out)


def convert_to_number(text):
    if "e" in str(text).lower().replace("times", ""):
        try:
            result = float(text)
            return int(result) if result.is_integer() else result
        except ValueError:
            return text
    match = _SCI_TIMES_RE.search(str(text))
    if match:
        result = float(match.group(1)) * _pow10(int(match.group(2)))
        return int(result) if result.is_integer() else result
    return text


def convert_to_decimal(text):
    if "e" in str(text).lower():
        try:
            return format(float(text), "f").rstrip("0").rstrip(".")
        except ValueError:
            return text
    match = _POW10_RE.search(str(text))
    if match:
        return format(float(1) * _pow10(int(match.group(1))), "f").rstrip("0").rstrip(".")
    match = _SCI_TIMES_BRACED_RE.search(str(text))
    if match:
        return format(float(match.group(1)) * _pow10(int(match.group(2))), "f").rstrip("0").rstrip(".")
    return text


def clean_math_func_1(text: str) -> str:
    return _CLEAN_FUNC_RE.sub(lambda m: f"{float(m.group(1))}e{int(m.group(2))}", text.replace(",", ""))


def is_numbers_equal_post(num1_str: str, num2_str: str, tolerance: float = 1e-10) -> bool:
    def parse_scientific(s):
        if "e" in s.lower():
            return float(s)
        s = s.replace("\\", "").replace(",", "")
        match = _POST_SCI_RE.search(s)
        if match:
            return float(match.group(1)) * _pow10(int(match.group(2)))
        return float(s)

    try:
        num1, num2 = parse_scientific(num1_str), parse_scientific(num2_str)
    except ValueError:
        return False

    def significant_digits(s):
        s = str(s).lower()
        if "e" in s:
            s = f"{float(s):f}"
        s = s.rstrip("0").rstrip(".")
        return len("".join(filter(str.isdigit, s)))

    sig = min(significant_digits(num1_str), significant_digits(num2_str))
    scale = max(abs(num1), abs(num2))
    if scale == 0:
        return abs(num1 - num2) < tolerance
    return abs(num1 - num2) / scale <= 0.5 * 10 ** (-(sig - 1))


def _all_equal(pairs, paper: bool, tags: list, include_percentage: bool, is_close: bool) -> bool:
    sub: list[str] = []
    for p, r in pairs:
        if not math_equal(p, r, paper, sub, include_percentage, is_close):
            return False
    tags.extend(sub)
    return True


def _matrix_rows(s: str) -> list[str]:
    return [line.strip() for line in s[len("\\begin{pmatrix}") : -len("\\end{pmatrix}")].split("\\\\") if line.strip()]


def _is_matrix(s: str) -> bool:
    return s.startswith(("\\begin{pmatrix}", "\\begin{bmatrix}")) and s.endswith(("\\end{pmatrix}", "\\end{bmatrix}"))


def math_equal(
    prediction,
    reference,
    paper: bool = True,
    tags: list | None = None,
    include_percentage: bool = True,
    is_close: bool = True,
) -> bool:
    """The harness's ``math_equal`` (module doc); ``paper`` switches the CFT-only steps on."""
    tags = [] if tags is None else tags
    decided = fast_equal(prediction, reference, paper, tags, include_percentage, is_close)
    if decided is not None:
        return decided
    reference, prediction = str(reference).strip(), str(prediction).strip()
    if "pmatrix" in prediction and "pmatrix" not in reference:
        reference = str_to_pmatrix(reference)
    pred_str, ref_str = prediction, reference
    if (prediction.startswith("[") and prediction.endswith("]") and not reference.startswith("(")) or (
        prediction.startswith("(") and prediction.endswith(")") and not reference.startswith("[")
    ):
        pred_str, ref_str = pred_str.strip("[]()"), ref_str.strip("[]()")
    for s in ["{", "}", "(", ")"]:
        ref_str, pred_str = ref_str.replace(s, ""), pred_str.replace(s, "")
    if pred_str.lower() == ref_str.lower():
        return True
    if _LIST_RE.match(prediction) is not None and _LIST_RE.match(reference) is not None:
        pred_parts, ref_parts = prediction[1:-1].split(","), reference[1:-1].split(",")
        if len(pred_parts) == len(ref_parts) and _all_equal(
            zip(pred_parts, ref_parts), paper, tags, include_percentage, is_close
        ):
            return True
    if _is_matrix(prediction) and _is_matrix(reference):
        pred_lines, ref_lines = _matrix_rows(prediction), _matrix_rows(reference)
        if len(pred_lines) == len(ref_lines):
            cells = []
            for pl, rl in zip(pred_lines, ref_lines):
                pp, rp = pl.split("&"), rl.split("&")
                if len(pp) != len(rp):
                    cells = None
                    break
                cells.extend(zip(pp, rp))
            if cells is not None and _all_equal(cells, paper, tags, include_percentage, is_close):
                return True
    if paper and convert_to_number(prediction) == convert_to_number(reference):
        tags.append("sci_notation")
        return True
    if prediction.count("=") == 1 and reference.count("=") == 1:
        pl, pr = prediction.split("=")
        rl, rr = reference.split("=")
        pred, ref = f"{pl.strip()} - ({pr.strip()})", f"{rl.strip()} - ({rr.strip()})"
        if symbolic_equal(pred, ref) or symbolic_equal(f"-({pred})", ref):
            return True
    elif prediction.count("=") == 1 and len(prediction.split("=")[0].strip()) <= 2 and "=" not in reference:
        if _all_equal([(prediction.split("=")[1], reference)], paper, tags, include_percentage, is_close):
            return True
    elif reference.count("=") == 1 and len(reference.split("=")[0].strip()) <= 2 and "=" not in prediction:
        if _all_equal([(prediction, reference.split("=")[1])], paper, tags, include_percentage, is_close):
            return True
    if paper and ("=" in prediction or "=" in reference):
        sub: list[str] = []
        if math_equal(
            prediction.split("=")[-1].replace("{", "("),
            reference.split("=")[-1].replace("{", "("),
            paper,
            sub,
            include_percentage,
            is_close,
        ):
            tags.extend(sub + ["rhs_split"])
            return True
    if paper and convert_to_decimal(prediction) == convert_to_decimal(reference):
        tags.append("sci_notation")
        return True
    if symbolic_equal(prediction, reference):
        return True
    if paper:
        try:
            if is_numbers_equal_post(clean_math_func_1(prediction), clean_math_func_1(reference)):
                tags.append("sig_digits")
                return True
        except Exception:
            pass
    return False


def _latex(s: str):
    from latex2sympy2_extended import latex2sympy

    return latex2sympy(s, normalization_config=None)


def _expr(s: str):
    from sympy.parsing.sympy_parser import parse_expr

    if _UNSAFE_EXPR_RE.search(s):
        raise ValueError("refusing to eval text that can reach Python builtins")
    return parse_expr(s)


@lru_cache(maxsize=8192)
def _parse(s: str):
    for f in (_latex, _expr):
        try:
            return f(s.replace("\\\\", "\\"))
        except Exception:
            try:
                return f(s)
            except Exception:
                pass
    return s


def symbolic_equal(a: str, b: str) -> bool:
    """The harness's ``symbolic_equal`` (parse, then string / equals / simplify / equation / numeric / matrix)."""
    from sympy import N, simplify

    a, b = _parse(a), _parse(b)
    try:
        if str(a) == str(b) or a == b:
            return True
    except Exception:
        pass
    try:
        if a.equals(b) or simplify(a - b) == 0:
            return True
    except Exception:
        pass
    try:
        if (abs(a.lhs - a.rhs)).equals(abs(b.lhs - b.rhs)):
            return True
    except Exception:
        pass
    try:
        if numeric_equal(float(N(a)), float(N(b))):
            return True
    except Exception:
        pass
    try:
        if a.shape == b.shape:
            if a.applyfunc(lambda x: round(x, 3)).equals(b.applyfunc(lambda x: round(x, 3))):
                return True
    except Exception:
        pass
    return False
