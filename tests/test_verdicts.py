"""Verdict parsing: the forms table, the LAST conclusion rule, counting what cannot be read, and every verdict the
testbed teacher writes read back."""

from __future__ import annotations

import pytest

from cft_lab.data.verdicts import FORMS, PARSED_FORMS, UNPARSED_FORMS, form_counts, parse_verdict
from cft_lab.testbed import noisy, problems
from cft_lab.testbed import teacher as tb

# (critique, verdict, form): synthetic critiques in every variant seen in released and teacher-written data
TABLE = [
    ("Step 1 is fine.\n\nConclusion: right [END]", "right", "tag"),
    ("Step 2 is off by one.\n\nConclusion: wrong [END]", "wrong", "tag"),
    ("Checks out.\n\nConclusion: correct [END]", "right", "tag_correct_incorrect"),
    ("Sign error.\n\nConclusion: Incorrect [END]", "wrong", "tag_correct_incorrect"),
    ("**Conclusion: incorrect**", "wrong", "tag_correct_incorrect"),
    ("Good.\n\n**Conclusion: right [END]**", "right", "bold"),
    ("Good.\n\n**Conclusion**: right [END]", "right", "bold"),
    ("Bad.\n\nConclusion: **wrong** [END]", "wrong", "bold"),
    ("Bad.\n\n### Conclusion: wrong [END]", "wrong", "bold"),
    ("Bad.\n\n__Conclusion__: wrong", "wrong", "bold"),
    ("Fine.\n\nConclusion: right", "right", "no_end_marker"),
    ("Fine.\n\nConclusion: wrong.", "wrong", "no_end_marker"),
    ("Fine.\n\nCONCLUSION: Right [END]", "right", "tag_variant"),
    ("Fine.\n\nConclusion:  right [END]", "right", "tag_variant"),
    ("Fine.\n\nConclusion: the student's solution is wrong [END]", "wrong", "tag_variant"),
    (
        "### Conclusion\nThe student's answer includes an extra root. "
        "Therefore, the student's answer is **wrong**. [END]",
        "wrong",
        "conclusion_statement",
    ),
    ("**Conclusion:**\nThe steps hold, and the final answer is correct.", "right", "conclusion_statement"),
    # only sentences about the solution/answer/response count as verdicts
    ("### Conclusion\nThe method is correct, but the final answer is wrong. [END]", "wrong", "conclusion_statement"),
    # the LAST conclusion decides, whatever came before
    ("Conclusion: wrong [END]\nOn a second look the sign is fine.\nConclusion: right [END]", "right", "tag"),
    ("### Conclusion\nThe answer is **correct**.\n**Conclusion: right [END]**", "right", "bold"),
    # what cannot be read is None, with the reason
    ("", None, "empty"),
    ("   \n", None, "empty"),
    (None, None, "empty"),
    ("The student's answer is right. [END]", None, "missing"),
    ("The method is fine and the answer is correct.", None, "missing"),
    ("Conclusion: right/wrong [END]", None, "ambiguous"),
    ("Conclusion: **right** or **wrong** [END]", None, "ambiguous"),
    ("### Conclusion\nThe solution is correct up to step 3, but the final answer is wrong. [END]", None, "ambiguous"),
    ("Conclusion: partially correct [END]", None, "unrecognised"),
    ("Conclusion: right [END]\nConclusion: unclear", None, "unrecognised"),
    ("### Conclusion\nThe answer is not correct. [END]", None, "unrecognised"),
    ("## Conclusion\nSee above. [END]", None, "unrecognised"),
]


@pytest.mark.parametrize("text,verdict,form", TABLE)
def test_forms_table(text, verdict, form):
    p = parse_verdict(text)
    assert (p.verdict, p.form) == (verdict, form)
    assert p.parsed == (verdict is not None)
    assert (form in PARSED_FORMS) == (verdict is not None) and form in FORMS


def test_parse_details_word_end_marker_and_markup():
    p = parse_verdict("Bad.\n\nConclusion: **Wrong** [END]")
    assert (p.word, p.end_marker, p.markup) == ("Wrong", True, True)
    p = parse_verdict("Fine.\nConclusion: right")
    assert (p.word, p.end_marker, p.markup) == ("right", False, False)


def test_every_form_of_the_table_is_counted():
    counts = form_counts(t for t, _, _ in TABLE)
    assert sum(counts.values()) == len(TABLE)
    assert set(counts) == set(FORMS)  # the table exercises every form
    assert counts["empty"] == 3 and counts["ambiguous"] == 3
    assert sum(counts[f] for f in UNPARSED_FORMS) == sum(1 for _, v, _ in TABLE if v is None)


def test_reads_every_verdict_the_testbed_teacher_writes():
    items = problems.generate("train", 40, seed=0, min_steps=2, max_steps=4)
    weak_vague = tb.TeacherStrength(miss_rate=0.3, false_alarm_rate=0.3, vague_rate=0.5)
    seen = set()
    for p in items:
        resp = noisy.noisy_solve(p, seed=1, error_rate=0.5)
        for strength in (tb.STRONG, tb.WEAK, weak_vague):
            c = tb.critique(p, resp.text, strength, seed=2)
            ours = parse_verdict(c.text)
            assert ours.form == "tag" and ours.verdict == c.verdict
            seen.add(c.verdict)
    assert seen == {"right", "wrong"}


def test_the_echoed_format_and_a_heading_verdict():
    assert parse_verdict("Conclusion: right/wrong [END]").verdict is None  # the prompt's format, echoed: no guess
    text = "### Conclusion\nThe student's answer is **wrong**. [END]"  # a real GPT-4o form, no colon
    assert parse_verdict(text).verdict == "wrong"
