"""``strip_string``: the answer cleanup of the paper's math harness, and a corrected variant.

Contract: ``normalize(s, skip_unit, strict, quirks)`` returns the cleaned answer string. With ``strict=False`` it is
the CFT harness's ``parser.strip_string`` step for step (docs/protocol.md §4.2, §9), quirks included:

* a long list of "unit words" (mainly from MathQA: ``a``, ``c``, ``d``, ``sec``, ``east``, ...) is deleted wherever
  the word stands alone, which mangles answers such as ``\\sec x`` (-> ``\\x``), ``\\frac{c}{a}`` and TheoremQA's
  option golds ``(a)``/``(c)``/``(d)`` (all -> ``()``);
* ``\\text{east}`` and ``\\mbox{Saturday}`` end up empty;
* ``and`` is deleted inside words, ``inf`` becomes ``\\infty`` inside words, number words are converted.

With ``strict=True`` (the ``strict`` grading mode) the steps that destroy information in a gold answer are fixed:
a unit word is deleted only where it follows a number (``5 cm``, ``12\\text{ feet}``), ``\\mbox{X}`` keeps ``X``
like ``\\text{X}`` does, and ``and`` is deleted only as a standalone word. Everything else is the same.

``quirks``, when a list is passed, receives the names of the quirks that changed this string (vocabulary in
``cft_lab.eval.grading.QUIRKS``): ``unit_word_deleted`` when the paper's unit-word list deleted a word that the strict
rule keeps, ``and_deleted`` when ``and`` was cut out of a longer word, ``mbox_deleted`` when ``\\mbox{...}`` content
was dropped.

Adapted from QwenLM/Qwen2.5-Math ``evaluation/parser.py`` (as vendored by TIGER-AI-Lab/CritiqueFineTuning
``tools/evaluate_math/parser.py``), itself derived from ZubinGou/math-evaluation-harness (MIT License,
Copyright (c) 2023 Zhibin Gou) and the Hendrycks MATH release. No library ships this exact cleanup, and paper mode
must reproduce it byte for byte, so it is kept as code here.

>>> normalize("\\\\left( 3, \\\\frac{\\\\pi}{2} \\\\right)")
'(3,\\\\frac{\\\\pi}{2})'
>>> normalize("\\\\sec x"), normalize("\\\\sec x", strict=True)
('\\\\x', '\\\\secx')
>>> normalize("\\\\text{east}"), normalize("\\\\text{east}", strict=True)
('', 'east')
>>> normalize("5 \\\\text{ cm}"), normalize("50\\\\%"), normalize("\\\\dfrac12")
('5', '50', '\\\\frac{1}{2}')
"""

from __future__ import annotations

import re

from cft_lab.eval.grading.w2n import word_to_num

# units mainly from MathQA (the harness's list, in its order; duplicates and regex metacharacters kept as they are,
# because each entry is used as a raw regular expression)
UNIT_TEXTS = [
    "east",
    "degree",
    "mph",
    "kmph",
    "ft",
    "m sqaure",
    " m east",
    "sq m",
    "deg",
    "mile",
    "q .",
    "monkey",
    "prime",
    "ratio",
    "profit of rs",
    "rd",
    "o",
    "gm",
    "p . m",
    "lb",
    "tile",
    "per",
    "dm",
    "lt",
    "gain",
    "ab",
    "way",
    "west",
    "a .",
    "b .",
    "c .",
    "d .",
    "e .",
    "f .",
    "g .",
    "h .",
    "t",
    "a",
    "h",
    "no change",
    "men",
    "soldier",
    "pie",
    "bc",
    "excess",
    "st",
    "inches",
    "noon",
    "percent",
    "by",
    "gal",
    "kmh",
    "c",
    "acre",
    "rise",
    "a . m",
    "th",
    "π r 2",
    "sq",
    "mark",
    "l",
    "toy",
    "coin",
    "sq . m",
    "gallon",
    "° f",
    "profit",
    "minw",
    "yr",
    "women",
    "feet",
    "am",
    "pm",
    "hr",
    "cu cm",
    "square",
    "v â € ™",
    "are",
    "rupee",
    "rounds",
    "cubic",
    "cc",
    "mtr",
    "s",
    "ohm",
    "number",
    "kmph",
    "day",
    "hour",
    "minute",
    "min",
    "second",
    "man",
    "woman",
    "sec",
    "cube",
    "mt",
    "sq inch",
    "mp",
    "∏ cm ³",
    "hectare",
    "more",
    "sec",
    "unit",
    "cu . m",
    "cm 2",
    "rs .",
    "rs",
    "kg",
    "g",
    "month",
    "km",
    "m",
    "cm",
    "mm",
    "apple",
    "liter",
    "loss",
    "yard",
    "pure",
    "year",
    "increase",
    "decrease",
    "d",
    "less",
    "Surface",
    "litre",
    "pi sq m",
    "s .",
    "metre",
    "meter",
    "inch",
]
UNIT_TEXTS = UNIT_TEXTS + [t + "s" for t in UNIT_TEXTS]

_UNIT_RES = [re.compile(r"(^|\W)" + u + r"($|\W)") for u in UNIT_TEXTS]
# One pass over the string tells whether any unit pattern can match at all; when none does, the 2 x 264
# sequential substitutions cannot change anything, so skipping them is exact (and keeps grading fast).
_ANY_UNIT_RE = re.compile(r"(?:^|\W)(?:" + "|".join(UNIT_TEXTS) + r")(?:$|\W)")
# strict: a unit word only where it follows a number, possibly inside \text{ }, \mbox{ } or after a LaTeX space
_STRICT_UNIT_RES = [re.compile(r"(\d(?:\s|\\[ ,;!]|\\text\{|\\mbox\{|\{)*)" + u + r"($|\W)") for u in UNIT_TEXTS]

_ARRAY_BEGIN_RE = re.compile(r"\\begin\{array\}\{.*?\}")
_TRAILING_TEXT_RE = re.compile(r"\\text{.*?}$")
_TEXT_RE = re.compile(r"\\text\{(.*?)\}")
_MBOX_RE = re.compile(r"\\mbox{.*?}")
_MBOX_KEEP_RE = re.compile(r"\\mbox\{(.*?)\}")
_TRAILING_ZEROS_RE = re.compile(r"(\d+)\.0*([^\d])")
_TRAILING_ZEROS_END_RE = re.compile(r"(\d+)\.0*$")
_SQRT_RE = re.compile(r"\\sqrt(\w+)")
_AND_WORD_RE = re.compile(r"(^|\W)and($|\W)")


def fix_fracs(string: str) -> str:
    r"""``\frac12`` -> ``\frac{1}{2}``, ``\frac1b`` -> ``\frac{1}{b}`` (Hendrycks MATH's ``_fix_fracs``)."""
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if len(substr) > 0 and substr[0] == "{":
            new_str += substr
            continue
        if len(substr) < 2:
            return string
        a, b = substr[0], substr[1]
        if b != "{":
            new_str += "{" + a + "}{" + b + "}" + substr[2:]
        else:
            new_str += "{" + a + "}" + b + substr[2:]
    return new_str


def fix_a_slash_b(string: str) -> str:
    r"""``3/4`` -> ``\frac{3}{4}`` when both sides are integers."""
    parts = string.split("/")
    if len(parts) != 2:
        return string
    a, b = parts
    try:
        if "sqrt" not in a:
            a = int(a)
        if "sqrt" not in b:
            b = int(b)
        assert string == f"{a}/{b}"
        return "\\frac{" + str(a) + "}{" + str(b) + "}"
    except Exception:
        return string


def convert_word_number(text: str) -> str:
    try:
        return str(word_to_num(text))
    except Exception:  # the harness uses a bare except: any failure keeps the text
        return text


def _remove_units(string: str, strict: bool, quirks: list | None) -> str:
    if not _ANY_UNIT_RE.search(string):
        return string
    before = string
    paper = string
    for _ in range(2):
        for rx in _UNIT_RES:
            new = rx.sub(r"\1\2", paper)
            if new != "":
                paper = new
    if not strict:
        if quirks is not None and paper != _remove_units(before, True, None):
            quirks.append("unit_word_deleted")
        return paper
    out = string
    for _ in range(2):
        for rx in _STRICT_UNIT_RES:
            new = rx.sub(r"\1\2", out)
            if new != "":
                out = new
    return out


def normalize(string, skip_unit: bool = False, strict: bool = False, quirks: list | None = None) -> str:
    """The harness's ``strip_string(string, skip_unit)``; ``strict`` fixes the gold-mangling steps (module doc)."""
    string = str(string).strip()
    string = string.replace("\n", "")
    string = string.rstrip(".")
    string = string.replace("\\!", "")
    # matrix
    string = _ARRAY_BEGIN_RE.sub(r"\\begin{pmatrix}", string)
    string = string.replace("\\end{array}", "\\end{pmatrix}")
    string = string.replace("bmatrix", "pmatrix")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("\\{", "{").replace("\\}", "}")
    # a trailing \text{...} is a unit, unless it is all there is
    _string = _TRAILING_TEXT_RE.sub("", string).strip()
    if _string != "" and _string != string:
        string = _string
    if not skip_unit:
        string = _remove_units(string, strict, quirks)
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "").replace("$", "")
    string = string.replace("\\(", "").replace("\\)", "")
    string = convert_word_number(string)
    string = _TEXT_RE.sub(r"\1", string)
    for key in ["x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"]:
        string = string.replace(key, "")
    string = string.replace("\\emptyset", r"{}")
    string = string.replace("(-\\infty,\\infty)", "\\mathbb{R}")
    string = string.replace("\\%", "").replace("%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    # (the harness also strips {x}/(x)/[x] when the whole string isalnum(), which can never hold: a no-op)
    string = string.replace("infinity", "\\infty")
    if "\\infty" not in string:
        string = string.replace("inf", "\\infty")
    string = string.replace("+\\inity", "\\infty")
    if strict:
        string = _AND_WORD_RE.sub(r"\1\2", string)
    else:
        if quirks is not None and "and" in _AND_WORD_RE.sub(r"\1\2", string):
            quirks.append("and_deleted")
        string = string.replace("and", "")
    string = string.replace("\\mathbf", "")
    if strict:
        string = _MBOX_KEEP_RE.sub(r"\1", string)
    else:
        if quirks is not None and any(m.group(0) != "\\mbox{}" for m in _MBOX_RE.finditer(string)):
            quirks.append("mbox_deleted")
        string = _MBOX_RE.sub("", string)
    if "j" in string and "i" not in string:
        string = string.replace("j", "i")
    string = _TRAILING_ZEROS_RE.sub(r"\1\2", string)
    string = _TRAILING_ZEROS_END_RE.sub(r"\1", string)
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    # "k = 3" -> "3"
    parts = string.split("=")
    if len(parts) == 2 and len(parts[0]) <= 2:
        string = parts[1]
    string = _SQRT_RE.sub(r"\\sqrt{\1}", string)
    string = string.replace(" ", "")
    string = fix_fracs(string)
    string = fix_a_slash_b(string)
    return string
