"""Multiple-choice extraction: GPQA (docs/protocol.md §4.3) and MMLU-Pro (§4.4), per grading mode.

Contract: ``extract_choice(output, benchmark, mode)`` returns the extracted letter ("" when none);
``grade_choice(output, gold, benchmark, mode, n_options)`` returns ``(correct, pred, quirks)`` for paper and
strict mode (math_verify mode is run by ``core`` in the worker: ``mv.mv_grade`` with the option letters).

GPQA, paper (``utils.answer_clean`` of the harness's MAmmoTH-derived GPQA script, ``--form qwen``):
the output is searched for the triggers "The answer is:", "The answer is", "the answer is"; if any of them occurs
more than once the output is taken for an in-context-learning transcript and only its first paragraph (up to the
first blank line) is kept; after the last trigger the FIRST standalone letter A–D wins, without a trigger the LAST
one; the text is upper-cased first, so a lowercase article ("a") counts as "A". Then exact match with the gold
letter. The blank-line rule comes from every published copy of ``answer_clean``; the CFT copy itself is not
public, so it is [inferred] (docs/protocol.md §4.3 lists the rest).
GPQA, strict: the same triggers and first/last rule, but only capital letters count and there is no paragraph cut.
Quirks (paper): ``lowercase_letter`` when the scored letter was lowercase in the output, ``gpqa_icl_split`` when the
paragraph cut changed the letter.

MMLU-Pro, paper (``evaluate_from_local.py``): the first ``answer is \\(?([A-J])\\)?``, else
``.*[aA]nswer:\\s*([A-J])``, else the last standalone A–J; when nothing is found the item is scored against a
"random" guess, ``random.seed(12345); randint(0, n_options - 1)``, the same letter every time
(``mmlu_pro_fallback``; quirk ``fallback_guess``). The option count (after the harness drops "N/A" options) must
then be passed as ``n_options``. MMLU-Pro, strict: the same extraction, no guess: nothing found is wrong.

>>> extract_choice("Let me think... the answer is a tricky one, but (C) fits.", "gpqa", "paper")
'A'
>>> extract_choice("Let me think... the answer is a tricky one, but (C) fits.", "gpqa", "strict")
'C'
>>> extract_choice("The answer is (C).", "mmlu_pro", "paper"), mmlu_pro_fallback(10)
('C', 'G')
"""

from __future__ import annotations

import random
import re

CHOICE_BENCHMARKS = ("gpqa", "mmlu_pro")
CHOICE_LETTERS = {"gpqa": "ABCD", "mmlu_pro": "ABCDEFGHIJ"}
GPQA_TRIGGERS = ("The answer is:", "The answer is", "the answer is")
_GPQA_SPLIT_RE = re.compile("|".join(GPQA_TRIGGERS))
_GPQA_LETTER_RE = re.compile(r"\b(A|B|C|D)\b")
_MMLU_FIRST_RE = re.compile(r"answer is \(?([A-J])\)?")
_MMLU_AGAIN_RE = re.compile(r"(?=[aA]nswer:\s*([A-J]))")  # a lookahead: matches may overlap
_MMLU_FINAL_RE = re.compile(r"\b[A-J]\b")


def _gpqa_clean(pred: str, upper: bool, icl: bool) -> tuple[str, int | None, bool, str]:
    """(answer, offset of the letter in the searched text or None, whether the paragraph cut applied, that text)."""
    pred = pred.strip("\n")
    cut = icl and any(pred.count(t) > 1 for t in GPQA_TRIGGERS)
    if cut:
        pred = pred.split("\n\n")[0]
    parts = _GPQA_SPLIT_RE.split(pred)
    answer_flag = len(parts) > 1
    if answer_flag:
        pred = parts[-1]
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ")
    hay = pred.upper() if upper else pred
    found = list(_GPQA_LETTER_RE.finditer(hay))
    if found:
        m = found[0] if answer_flag else found[-1]
        answer, offset = m.group(1), m.start()
    else:
        answer, offset = pred.strip().strip("."), None
    return answer.rstrip(".").rstrip("/"), offset, cut, pred


def _compare_letter(answer: str, gold: str) -> bool:
    """``utils.compare_answer_with_groundtruth`` for a letter gold."""
    for symbol in ("\\text{", "\\boxed{"):
        if symbol in answer:
            answer = answer.replace(symbol, "").rstrip("}")
    return answer.lower() == gold.lower()


def mmlu_pro_fallback(n_options: int) -> str:
    """The letter MMLU-Pro's script scores an unanswered item against: ``random.seed(12345); randint(0, n-1)``."""
    if not 1 <= int(n_options) <= 10:
        raise ValueError(f"mmlu_pro: n_options must be 1..10, got {n_options!r}")
    return "ABCDEFGHIJ"[random.Random(12345).randint(0, int(n_options) - 1)]


def _mmlu_pro_extract(text: str) -> str | None:
    m = _MMLU_FIRST_RE.search(text)
    if m:
        return m.group(1)
    # r".*[aA]nswer:\s*([A-J])" (search) matches from the start of the first line holding an "answer:" that is
    # followed by a letter, and its greedy ".*" takes the LAST such "answer:" on that line. The script's regex needs
    # quadratic time on a long line without a match (50 KB: minutes); this finds the same letter in linear time.
    again = list(_MMLU_AGAIN_RE.finditer(text))
    if again:
        line_start = text.rfind("\n", 0, again[0].start()) + 1
        line_end = text.find("\n", line_start)
        line_end = len(text) if line_end < 0 else line_end
        return [m for m in again if m.start() < line_end][-1].group(1)
    # the script's r"\b[A-J]\b(?!.*\b[A-J]\b)" with DOTALL is "the last standalone letter"; findall()[-1] finds the
    # same letter in linear time instead of rescanning the rest of the text after every candidate
    found = _MMLU_FINAL_RE.findall(text)
    return found[-1] if found else None


def extract_choice(output: str, benchmark: str, mode: str = "paper") -> str:
    """The letter the harness scores ("" when none; MMLU-Pro's fallback guess is not applied here)."""
    if benchmark == "gpqa":
        paper = mode == "paper"
        return _gpqa_clean(output, upper=paper, icl=paper)[0]
    if benchmark == "mmlu_pro":
        return _mmlu_pro_extract(output) or ""
    raise ValueError(f"{benchmark!r} is not a multiple-choice benchmark {CHOICE_BENCHMARKS}")


def grade_choice(
    output: str, gold: str, benchmark: str, mode: str, n_options: int | None = None
) -> tuple[bool, str, tuple[str, ...]]:
    """(correct, pred, quirks) in paper or strict mode (module doc)."""
    letters = CHOICE_LETTERS[benchmark]
    if gold not in letters:
        raise ValueError(f"{benchmark}: gold must be one option letter of {letters}, got {gold!r}")
    quirks: list[str] = []
    if benchmark == "gpqa":
        if mode != "paper":
            answer = _gpqa_clean(output, upper=False, icl=False)[0]
            return _compare_letter(answer, gold), answer, ()
        answer, offset, cut, text = _gpqa_clean(output, upper=True, icl=True)
        # (str.upper() can lengthen text, "ß" -> "SS"; offsets then no longer line up and the quirk is not judged)
        if offset is not None and len(text.upper()) == len(text) and text[offset].islower():
            quirks.append("lowercase_letter")
        if cut and _gpqa_clean(output, upper=True, icl=False)[0] != answer:
            quirks.append("gpqa_icl_split")
        return _compare_letter(answer, gold), answer, tuple(quirks)
    answer = _mmlu_pro_extract(output)
    if answer is None:
        if mode != "paper":
            return False, "", ()
        if n_options is None:
            raise ValueError(
                "mmlu_pro: no letter could be extracted and n_options was not given; paper mode "
                "scores such an item against mmlu_pro_fallback(n_options) (pass n_options)"
            )
        answer = mmlu_pro_fallback(n_options)
        quirks.append("fallback_guess")
    return answer == gold, answer, tuple(quirks)
