"""The rule teacher's ``review`` style (GPT-4o-like prose): the same facts and judgements as the ``checklist`` style,
worded so that no critique line reads like a solution line."""

from __future__ import annotations

import doctest
import re

import pytest

from cft_lab.testbed import review
from cft_lab.testbed.noisy import noisy_solve
from cft_lab.testbed.problems import generate
from cft_lab.testbed.teacher import STRONG, WEAK, critique, parse_step_line, parse_verdict
from conftest import compose


@pytest.fixture(scope="module")
def pairs():
    return [(p, noisy_solve(p, seed=0)) for p in generate("train", 400, seed=0)]


def test_doctests():
    result = doctest.testmod(review)
    assert result.attempted > 0 and result.failed == 0


def test_strong_review_states_the_facts_of_the_checklist(pairs):
    wrong = 0
    for p, r in pairs:
        c = critique(p, r.text, STRONG, style="review")
        lines = c.text.splitlines()
        assert c.verdict == ("right" if r.correct else "wrong") == parse_verdict(c.text) and c.truthful
        assert lines[-1] == f"Conclusion: {c.verdict} [END]"
        assert not any(line.startswith("Step ") for line in lines), c.text  # never a solution line
        if r.correct:
            assert f"final answer {p.answer} is" in c.text
            continue
        wrong += 1
        k, correct = r.first_error, p.steps[r.first_error]
        ordinal = review.ORDINALS[k]
        flagged = [line for line in lines if line.startswith(f"The {ordinal} step") and "right" not in line]
        assert len(flagged) == 1, c.text
        assert str(correct.result) in flagged[0] or correct.render() in flagged[0]  # the correct value is named
        assert f"the correct answer is {p.answer}." in c.text and f"final answer {r.final} is wrong" in c.text
    assert wrong > 100


def test_styles_make_the_same_judgements_and_differ_in_words(pairs):
    for p, r in pairs:
        a, b = critique(p, r.text, WEAK, seed=3), critique(p, r.text, WEAK, seed=3, style="review")
        assert (a.verdict, a.truthful, a.behaviour) == (b.verdict, b.truthful, b.behaviour)
        assert b == critique(p, r.text, WEAK, seed=3, style="review")  # deterministic
        assert a.text != b.text
        if b.behaviour == "vague":
            assert not re.search(r"should be|equals|not \d+", b.text.splitlines()[-3]), b.text
        if b.behaviour == "false_alarm":
            m = re.search(r"(\d+) ([+*-]) (\d+) equals (\d+), not (\d+)\.", b.text)
            assert m is not None and m[4] != m[5]
    with pytest.raises(ValueError, match="unknown critique style"):
        critique(pairs[0][0], pairs[0][1].text, style="essay")


def test_review_lines_are_not_solution_lines(pairs):
    """A critique line the solution parser reads as a step would teach the model to write critiques as solutions."""
    for p, r in pairs[:100]:
        assert all(parse_step_line(line) is None for line in critique(p, r.text, style="review").text.splitlines())


def test_testbed_teachers_review_and_the_key_sees_the_style():
    from cft_lab.pipeline.plan import plan_cell

    strong = compose(["teacher=testbed_strong"])
    assert strong.teacher.critique_style == "review"
    checklist = compose(["teacher=testbed_strong", "teacher.critique_style=checklist"])
    assert plan_cell(strong).key_of("data") != plan_cell(checklist).key_of("data")
