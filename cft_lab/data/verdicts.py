"""Reading the teacher's verdict ("right" / "wrong") out of a critique, and saying how it was read.

Contract
--------
The released WebInstruct-CFT critiques (GPT-4o-1120, docs/protocol.md §1.2) end with ``Conclusion: right [END]`` or
``Conclusion: wrong [END]``, but real critiques drift from that tag (docs/pitfalls.md#data-and-teacher). The parser
reads the **last** conclusion of the text (an earlier one may be quoted or revised) and returns a
:class:`VerdictParse`: the verdict, or None, and the ``form`` that says how it was read or why it could not be.
It never guesses: anything it cannot read with certainty is None with a form that counts it.

Forms with a verdict (``PARSED_FORMS``), checked in this order:

``tag``                    exactly ``Conclusion: right [END]`` / ``Conclusion: wrong [END]``
``tag_correct_incorrect``  the value is correct/incorrect (``Conclusion: correct [END]``), any styling
``bold``                   markdown emphasis or heading marks around the label or the value
                           (``**Conclusion: right [END]**``, ``**Conclusion**: wrong [END]``,
                           ``Conclusion: **wrong** [END]``, ``### Conclusion: right [END]``)
``no_end_marker``          a plain tag without ``[END]`` after the value
``tag_variant``            other spellings of the tag: case (``CONCLUSION: Right``), spacing, a newline before the
                           value, or "the (student's) solution/answer/response is" before it
``conclusion_statement``   a ``Conclusion`` heading (``### Conclusion``, ``**Conclusion:**`` on its own line)
                           followed by prose whose verdict sentences ("the student's answer is **wrong**") all agree

Forms without a verdict (``UNPARSED_FORMS``):

``empty``         the critique is None or blank
``missing``       no conclusion at all (a bare ``[END]`` or "the answer is right" in prose is not a conclusion)
``ambiguous``     the last conclusion names both verdicts (``Conclusion: right/wrong [END]``) or its section's
                  verdict sentences disagree
``unrecognised``  the last conclusion has another value (``Conclusion: partially correct``), a negation
                  (``the answer is not correct``) or a heading with no verdict sentence

This is the project's only verdict parser: the testbed's ``parse_verdict`` returns its ``.verdict``, and it reads
every verdict the testbed teacher writes (tested).

>>> parse_verdict("Step 1 is fine.\\nConclusion: right [END]")
VerdictParse(verdict='right', form='tag', word='right', end_marker=True, markup=False)
>>> parse_verdict("**Conclusion**: Incorrect").form, parse_verdict("**Conclusion**: Incorrect").verdict
('tag_correct_incorrect', 'wrong')
>>> parse_verdict("Conclusion: right/wrong [END]").verdict is None
True
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Optional

RIGHT, WRONG = "right", "wrong"
PARSED_FORMS = ("tag", "tag_correct_incorrect", "bold", "no_end_marker", "tag_variant", "conclusion_statement")
UNPARSED_FORMS = ("empty", "missing", "ambiguous", "unrecognised")
FORMS = PARSED_FORMS + UNPARSED_FORMS

_WORDS = {"right": RIGHT, "correct": RIGHT, "wrong": WRONG, "incorrect": WRONG}
_MARK = r"(?:\*\*|__|\*|_)"
# "Conclusion" used as a label: optional emphasis between the word and its colon.
_LABEL = re.compile(rf"(?<![A-Za-z])conclusion(?:[ \t]*{_MARK})?[ \t]*:", re.IGNORECASE)
# "Conclusion" as a heading: alone on its line apart from markdown marks and an optional colon.
_HEADING = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?[*_]*[ \t]*conclusion[ \t]*[*_]*[ \t]*:?[ \t]*[*_]*[ \t]*$", re.IGNORECASE | re.MULTILINE
)
_VALUE = re.compile(
    rf"(?P<pre>(?:\s|{_MARK})*)"
    rf"(?P<phrase>the\s+(?:student'?s\s+)?(?:solution|answer|response)\s+is\s+(?:{_MARK})?)?"
    r"(?P<word>[A-Za-z]+)",
    re.IGNORECASE,
)
_ALTERNATIVE = re.compile(
    rf"[ \t]*{_MARK}?[ \t]*(?:/|\||\bor\b|\band\b)[ \t]*{_MARK}?[ \t]*"
    r"(?:right|wrong|correct|incorrect)\b",
    re.IGNORECASE,
)
_END = re.compile(r"\[END\]")
_STATEMENT = re.compile(
    rf"(?<![A-Za-z])(?:solution|answer|response)\s+is\s+(?P<neg>not\s+)?{_MARK}?"
    r"(?P<word>right|wrong|correct|incorrect)\b",
    re.IGNORECASE,
)
_CANONICAL = re.compile(r"Conclusion: (?:right|wrong) \[END\]")


@dataclass(frozen=True)
class VerdictParse:
    """How one critique's verdict was read.

    ``verdict`` is "right", "wrong" or None; ``form`` is one of :data:`FORMS`; ``word`` is the value as written
    (e.g. "Correct"), ``end_marker`` whether ``[END]`` follows it on its line, ``markup`` whether markdown marks
    decorate the conclusion.
    """

    verdict: Optional[str]
    form: str
    word: Optional[str] = None
    end_marker: bool = False
    markup: bool = False

    @property
    def parsed(self) -> bool:
        return self.verdict is not None


def _line_end(text: str, pos: int) -> int:
    nl = text.find("\n", pos)
    return len(text) if nl < 0 else nl


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _from_label(text: str, m: re.Match) -> VerdictParse:
    after = m.end()
    v = _VALUE.match(text, after)
    if v is None or v.group("word").lower() not in _WORDS:
        return VerdictParse(None, "unrecognised", v.group("word") if v else None)
    word = v.group("word")
    rest_end = _line_end(text, v.end())
    rest = text[v.end() : rest_end]
    if _ALTERNATIVE.match(rest):
        return VerdictParse(None, "ambiguous", word)
    verdict = _WORDS[word.lower()]
    end_marker = bool(_END.search(rest))
    lead = re.search(r"[#*_ \t]*$", text[_line_start(text, m.start()) : m.start()]).group(0)
    markup = bool(re.search(r"[*_#]", lead + text[m.start() : v.end()] + rest.replace("[END]", "")))
    if (
        re.fullmatch(r"Conclusion: (?:right|wrong)", text[m.start() : v.end()])
        and rest.startswith(" [END]")
        and not markup
    ):
        form = "tag"
    elif word.lower() in ("correct", "incorrect"):
        form = "tag_correct_incorrect"
    elif markup:
        form = "bold"
    elif not end_marker:
        form = "no_end_marker"
    else:
        form = "tag_variant"
    return VerdictParse(verdict, form, word, end_marker, markup)


def _from_heading(text: str, m: re.Match) -> VerdictParse:
    section = text[m.end() :]
    found = list(_STATEMENT.finditer(section))
    if not found:
        return VerdictParse(None, "unrecognised", None, bool(_END.search(section)), True)
    if any(s.group("neg") for s in found):
        return VerdictParse(None, "unrecognised", found[-1].group("word"), bool(_END.search(section)), True)
    verdicts = {_WORDS[s.group("word").lower()] for s in found}
    word = found[-1].group("word")
    if len(verdicts) > 1:
        return VerdictParse(None, "ambiguous", word, bool(_END.search(section)), True)
    markup = bool(re.search(r"[*_#]", m.group(0) + section))
    return VerdictParse(verdicts.pop(), "conclusion_statement", word, bool(_END.search(section)), markup)


def _last(matches: Iterator[re.Match]) -> Optional[re.Match]:
    """The last of ``matches`` (None when there is none)."""
    last = None
    for last in matches:  # noqa: B007 (the loop variable is the result)
        pass
    return last


def parse_verdict(critique: Optional[str]) -> VerdictParse:
    """The verdict of the LAST conclusion in ``critique`` and the form it was written in (see the module doc).

    >>> [parse_verdict(t).form for t in ["Conclusion: wrong [END]", "**Conclusion: right [END]**",
    ...                                   "Conclusion: wrong", "looks right [END]", None]]
    ['tag', 'bold', 'no_end_marker', 'missing', 'empty']
    >>> parse_verdict("### Conclusion\\nThe student's answer is **wrong**. [END]").verdict
    'wrong'
    """
    if critique is None or not critique.strip():
        return VerdictParse(None, "empty")
    label = _last(_LABEL.finditer(critique))
    heading = _last(_HEADING.finditer(critique))
    # A label whose line ends right after it ("**Conclusion:**\n...") is a heading; the heading regex sees it too.
    if heading is not None and (label is None or heading.end() >= _line_end(critique, label.end())):
        if label is not None and heading.start() <= label.start() < heading.end():
            parsed = _from_label(critique, label)
            if parsed.parsed or parsed.form == "ambiguous":
                return parsed  # "**Conclusion:**\nThe student's answer is correct." reads as the testbed does
        return _from_heading(critique, heading)
    if label is None:
        return VerdictParse(None, "missing")
    return _from_label(critique, label)


def form_counts(critiques: Iterable[Optional[str]]) -> dict[str, int]:
    """How many critiques were read in each form (only forms that occur), in :data:`FORMS` order.

    >>> form_counts(["Conclusion: right [END]", "Conclusion: wrong [END]", "no verdict"])
    {'tag': 2, 'missing': 1}
    """
    c = Counter(parse_verdict(t).form for t in critiques)
    return {f: c[f] for f in FORMS if c[f]}
