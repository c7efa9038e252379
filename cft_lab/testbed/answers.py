"""Answer extraction and grading for testbed outputs.

Contract
--------
* :func:`extract_boxed` returns the content of the LAST ``\\boxed{...}`` in a text, matching
  braces (nested braces are kept verbatim). If that last box is never closed (a truncated
  generation) it returns None rather than falling back to an earlier box.
* :func:`parse_int` accepts an integer written plainly, with a sign, thousands commas or a
  zero fractional part; anything else is None.
* :func:`grade` is ``parse_int(extract_boxed(output)) == gold``.

Example
-------
>>> grade("Step 1: 12 + 7 = 19.\\nThe answer is \\\\boxed{19}.", 19)
True
"""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\boxed\s*\{")
_INT = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.0*)?")


def _matching_brace(text: str, open_idx: int) -> int | None:
    """Index of the ``}`` closing the ``{`` at ``open_idx``, or None if unbalanced.

    >>> _matching_brace("{a{b}c}d", 0), _matching_brace("{a{b}", 0)
    (6, None)
    """
    depth = 0
    for i in range(open_idx, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``; None when there is none (or it is unclosed).

    >>> extract_boxed(r"so \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    >>> extract_boxed(r"\\boxed{1} then \\boxed{2}"), extract_boxed("no box")
    ('2', None)
    """
    if not text:
        return None
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    open_idx = last.end() - 1
    close_idx = _matching_brace(text, open_idx)
    if close_idx is None:
        return None
    return text[open_idx + 1 : close_idx]


def parse_int(s: str | None) -> int | None:
    """Parse an integer answer: ``"28"``, ``" +28 "``, ``"28.0"``, ``"1,024"``; else None.

    >>> [parse_int(x) for x in ["28", " 28 ", "28.0", "+28", "1,024", "-3"]]
    [28, 28, 28, 28, 1024, -3]
    >>> [parse_int(x) for x in [None, "", "28.5", "1,02", "x28", "2 8"]]
    [None, None, None, None, None, None]
    """
    if s is None:
        return None
    s = s.strip()
    if not _INT.fullmatch(s):
        return None
    return int(s.split(".")[0].replace(",", ""))


def grade(output: str, gold: int) -> bool:
    """Whether the last boxed answer of ``output`` parses to ``gold``.

    >>> grade(r"\\boxed{28}", 28), grade(r"\\boxed{29}", 28), grade("28", 28)
    (True, False, False)
    """
    return parse_int(extract_boxed(output)) == gold


def answer(text: str) -> str:
    """The answer a testbed output gives, as a string: its last boxed integer ("" when there is none). What a vote
    (maj@k, self-verified best-of-n) counts.

    >>> answer(r"so \\boxed{1,024}"), answer("no box")
    ('1024', '')
    """
    value = parse_int(extract_boxed(text))
    return "" if value is None else str(value)
