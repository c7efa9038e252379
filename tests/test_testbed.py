"""Tests for the embedded testbed world (cft_lab.testbed): problems, noisy solver, teacher, grading."""

from __future__ import annotations

import doctest
import re
from collections import Counter

import pytest

from cft_lab.testbed import answers, noisy, problems, teacher
from cft_lab.testbed.answers import extract_boxed, grade, parse_int
from cft_lab.testbed.noisy import make_slip, noisy_solve
from cft_lab.testbed.problems import SPLITS, Problem, Step, generate, split_of, stable_rng
from cft_lab.testbed.teacher import (
    STRONG,
    WEAK,
    TeacherStrength,
    critique,
    parse_step_line,
    parse_verdict,
    teacher_solution,
)

HAND = Problem(
    id="tb-hand",
    question="Mia has 12 apples. Then Mia buys 7 more apples. Then Mia gives away 5 apples. "
    "Then the number of apples doubles. How many apples does Mia have now?",
    steps=(Step(12, "+", 7, 19), Step(19, "-", 5, 14), Step(14, "*", 2, 28)),
    answer=28,
)
HAND_REF = "Step 1: 12 + 7 = 19.\nStep 2: 19 - 5 = 14.\nStep 3: 14 * 2 = 28.\nThe answer is \\boxed{28}."


@pytest.fixture(scope="module")
def train_pairs() -> list[tuple[Problem, noisy.Response]]:
    """500 (problem, noisy response) pairs, shared by the teacher tests."""
    return [(p, noisy_solve(p, seed=0)) for p in generate("train", 500, seed=0)]


# --------------------------------------------------------------------------- doctests
@pytest.mark.parametrize("module", [problems, noisy, teacher, answers])
def test_doctests(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- problems
def test_step_render_and_reference_solution_exact() -> None:
    assert Step(12, "+", 7, 19).render() == "12 + 7 = 19"
    assert HAND.reference_solution() == HAND_REF
    assert HAND.n_steps == 3


def test_problem_invariants_and_value_ranges() -> None:
    ps = generate("pretrain", 400, seed=3, min_steps=1, max_steps=6)
    assert {p.n_steps for p in ps} == set(range(1, 7))
    for p in ps:
        assert 2 <= p.steps[0].a <= 30
        assert p.id == problems.problem_id(p.question)
        for prev, s in zip(p.steps, p.steps[1:]):
            assert s.a == prev.result
        for s in p.steps:
            assert s.is_consistent and 0 <= s.result <= 99
            assert (s.b in (2, 3)) if s.op == "*" else (1 <= s.b <= 20)
        assert p.answer == p.steps[-1].result
        assert p.question.endswith("have now?")
        # one sentence for the start, one per operation, one question
        assert len(re.findall(r"[.?]( |$)", p.question)) == p.n_steps + 2


def test_n_steps_uniform_in_range() -> None:
    counts = Counter(p.n_steps for p in generate("train", 900, seed=0, min_steps=2, max_steps=4))
    assert set(counts) == {2, 3, 4}
    assert all(240 <= c <= 360 for c in counts.values()), counts


def test_determinism_and_seed_sensitivity() -> None:
    a = generate("train", 50, seed=0)
    assert a == generate("train", 50, seed=0)
    assert a != generate("train", 50, seed=1)
    assert [p.question for p in a] != [p.question for p in generate("train", 50, seed=1)]


def test_splits_disjoint_and_labelled() -> None:
    questions = {
        s: [p.question for p in generate(s, n, seed=0)]
        for s, n in [("test", 300), ("val", 300), ("pretrain", 1500), ("train", 1500)]
    }
    for s, qs in questions.items():
        assert len(set(qs)) == len(qs)  # de-duplicated
        assert all(split_of(q) == s for q in qs)
    sets = [set(qs) for qs in questions.values()]
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            assert not sets[i] & sets[j]


def test_splits_disjoint_across_step_ranges() -> None:
    short = {p.question for p in generate("train", 500, seed=0, min_steps=1, max_steps=2)}
    test_q = {p.question for p in generate("test", 300, seed=0, min_steps=1, max_steps=3)}
    assert not short & test_q


def test_split_proportions() -> None:
    counts = Counter(split_of(p.question) for p in (problems.candidate(i, 0, 2, 4) for i in range(4000)))
    for s, expected in [("test", 0.1), ("val", 0.1), ("pretrain", 0.4), ("train", 0.4)]:
        assert abs(counts[s] / 4000 - expected) < 0.03, counts


def test_prefix_stability() -> None:
    for s in SPLITS:
        assert generate(s, 40, seed=2) == generate(s, 80, seed=2)[:40]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(split="dev", n=1),
        dict(split="train", n=-1),
        dict(split="train", n=1, min_steps=0, max_steps=2),
        dict(split="train", n=1, min_steps=2, max_steps=7),
        dict(split="train", n=1, min_steps=4, max_steps=3),
    ],
)
def test_generate_rejects_bad_args(kwargs) -> None:
    with pytest.raises(ValueError):
        generate(**kwargs)


def test_generate_zero() -> None:
    assert generate("val", 0) == []


def test_generate_deduplicates_and_bounds_the_walk(monkeypatch) -> None:
    real = problems.candidate
    # a stream that repeats itself every 50 candidates: only its distinct train questions count
    monkeypatch.setattr(problems, "candidate", lambda i, *a: real(i % 50, *a))
    distinct = {p.question for p in (real(i, 0, 2, 4) for i in range(50)) if split_of(p.question) == "train"}
    got = generate("train", len(distinct), seed=0)
    assert {p.question for p in got} == distinct and len(got) == len(distinct)
    with pytest.raises(RuntimeError, match="exhausted"):
        generate("train", len(distinct) + 1, seed=0)


# --------------------------------------------------------------------------- noisy solver
def _lines(text: str) -> list[str]:
    return text.split("\n")


def test_noisy_error_ratio_band() -> None:
    ps = generate("train", 2000, seed=0)
    wrong = sum(not noisy_solve(p, seed=0).correct for p in ps) / len(ps)
    assert 0.45 <= wrong <= 0.55, wrong


@pytest.mark.parametrize("rate,expected", [(0.0, 0), (1.0, 200)])
def test_noisy_extreme_rates(rate: float, expected: int) -> None:
    ps = generate("val", 200, seed=0)
    assert sum(not noisy_solve(p, error_rate=rate).correct for p in ps) == expected


def test_noisy_rejects_bad_rate() -> None:
    with pytest.raises(ValueError):
        noisy_solve(HAND, error_rate=1.5)


def test_noisy_deterministic() -> None:
    ps = generate("train", 100, seed=0)
    assert [noisy_solve(p, seed=4) for p in ps] == [noisy_solve(p, seed=4) for p in ps]
    assert [noisy_solve(p, seed=4) for p in ps] != [noisy_solve(p, seed=5) for p in ps]


def test_noisy_slip_structure(train_pairs) -> None:
    kinds: Counter[str] = Counter()
    for p, r in train_pairs:
        assert r.final == parse_int(extract_boxed(r.text))
        assert r.correct == (r.final == p.answer) == (r.first_error is None)
        parsed = [parse_step_line(ln) for ln in _lines(r.text)[:-1]]
        assert [k for k, _ in parsed] == list(range(1, p.n_steps + 1))
        written = [s for _, s in parsed]
        assert _lines(r.text)[-1] == f"The answer is \\boxed{{{r.final}}}."
        if r.correct:
            assert r.text == p.reference_solution()
            continue
        k = r.first_error
        assert written[:k] == list(p.steps[:k])  # correct before the slip
        assert written[k].result != p.steps[k].result  # the slipped step's result is wrong
        for prev, s, true in zip(written[k:], written[k + 1 :], p.steps[k + 1 :]):
            # later steps: the problem's operation applied correctly to the believed value
            assert s.a == prev.result and (s.op, s.b) == (true.op, true.b) and s.is_consistent
            assert s.result != true.result
        assert written[-1].result == r.final
        slip = written[k]
        true = p.steps[k]
        if not slip.is_consistent:
            kinds["arithmetic"] += 1
            assert (slip.a, slip.op, slip.b) == (true.a, true.op, true.b)
            assert slip.result - true.result in noisy.ARITH_DELTAS
        elif slip.op != true.op:
            kinds["wrong_op"] += 1
            assert (slip.a, slip.b) == (true.a, true.b)
        else:
            kinds["misread"] += 1
            assert (slip.a == true.a) != (slip.b == true.b)
    assert min(kinds.values()) >= 30 and len(kinds) == 3, kinds


def test_noisy_slip_position_uniform(train_pairs) -> None:
    wrong = [(p, r) for p, r in train_pairs if not r.correct]
    early = sum(r.first_error < p.n_steps - 1 for p, r in wrong) / len(wrong)
    # uniform position over 2-4 steps: P(not the last step) = mean(1/2, 2/3, 3/4) ~= 0.64
    assert 0.5 <= early <= 0.78, early
    assert {r.first_error for _, r in wrong} == {0, 1, 2, 3}


@pytest.mark.parametrize(
    "kind,a,op,b,expected",
    [
        ("wrong_op", 19, "-", 5, Step(19, "+", 5, 24)),
        ("wrong_op", 19, "+", 5, Step(19, "-", 5, 14)),
        ("wrong_op", 7, "*", 2, Step(7, "+", 2, 9)),
    ],
)
def test_slipped_line_wrong_op(kind, a, op, b, expected) -> None:
    assert noisy.slipped_line(stable_rng("x"), a, op, b, kind) == expected


def test_slipped_line_arithmetic_and_misread() -> None:
    rng = stable_rng("slips")
    for _ in range(200):
        s = noisy.slipped_line(rng, 19, "-", 5, "arithmetic")
        assert (s.a, s.op, s.b) == (19, "-", 5) and s.result - 14 in noisy.ARITH_DELTAS
        m = noisy.slipped_line(rng, 19, "-", 12, "misread")
        assert m.is_consistent and m.op == "-"
        assert (m.a, m.b) in {(19, 11), (19, 13), (19, 21), (18, 12), (20, 12), (91, 12)}


# --------------------------------------------------------------------------- teacher
def test_strong_teacher_is_exact(train_pairs) -> None:
    n_wrong = 0
    for p, r in train_pairs:
        c = critique(p, r.text, STRONG, seed=0)
        assert c.truthful and c.behaviour == "precise"
        assert c.verdict == ("right" if r.correct else "wrong") == parse_verdict(c.text)
        lines = _lines(c.text)
        assert lines[-1] == f"Conclusion: {c.verdict} [END]"
        if r.correct:
            assert lines[:-2] == [f"Step {i}: {s.render()} is correct." for i, s in enumerate(p.steps, 1)]
            assert lines[-2] == f"The final answer {p.answer} is correct."
            continue
        n_wrong += 1
        k = r.first_error
        assert lines[:k] == [f"Step {i}: {s.render()} is correct." for i, s in enumerate(p.steps[:k], 1)]
        wrong_result = parse_step_line(_lines(r.text)[k])[1].result
        assert lines[k] == f"Step {k + 1} is wrong: {p.steps[k].render()}, not {wrong_result}."
        assert lines[k + 1] == f"The final answer should be {p.answer}, not {r.final}."
        assert len(lines) == k + 3  # nothing after the first wrong step but final + conclusion
    assert n_wrong > 150


def test_weak_teacher_agreement_and_behaviours(train_pairs) -> None:
    crits = [(r, critique(p, r.text, WEAK, seed=0)) for p, r in train_pairs]
    agreement = sum(c.truthful for _, c in crits) / len(crits)
    assert 0.7 <= agreement <= 0.95, agreement
    beh = Counter(c.behaviour for _, c in crits)
    assert set(beh) == {"precise", "vague", "miss", "false_alarm"}, beh
    n_wrong = sum(not r.correct for r, _ in crits)
    n_right = len(crits) - n_wrong
    assert abs(beh["miss"] / n_wrong - WEAK.miss_rate) < 0.08, beh
    assert abs(beh["false_alarm"] / n_right - WEAK.false_alarm_rate) < 0.06, beh
    assert abs(beh["vague"] / (n_wrong - beh["miss"]) - WEAK.vague_rate) < 0.12, beh
    for r, c in crits:
        assert parse_verdict(c.text) == c.verdict
        assert _lines(c.text)[-1] == f"Conclusion: {c.verdict} [END]"
        assert c.truthful == ((c.verdict == "right") == r.correct)
        if c.behaviour == "miss":
            assert not r.correct and c.verdict == "right"
        elif c.behaviour == "false_alarm":
            assert r.correct and c.verdict == "wrong"
            m = re.search(r"Step (\d+) is wrong: (\d+) ([+*-]) (\d+) = (\d+), not (\d+)\.", c.text)
            assert m is not None and m[5] != m[6]  # a bogus value for a correct step
        elif c.behaviour == "vague":
            assert not r.correct and c.verdict == "wrong"
            assert re.search(r"^Step \d+ is wrong\.$", c.text, re.M)
            assert str(r.final) not in c.text.split("\n")[-2]
    # deterministic from (problem, text, seed); a different seed changes some behaviours
    assert crits == [(r, critique(p, r.text, WEAK, seed=0)) for p, r in train_pairs]
    assert [c for _, c in crits] != [critique(p, r.text, WEAK, seed=1) for p, r in train_pairs]


@pytest.mark.parametrize(
    "text,verdict,expected_line",
    [
        (HAND_REF, "right", "The final answer 28 is correct."),
        # missing step 3
        (
            "Step 1: 12 + 7 = 19.\nStep 2: 19 - 5 = 14.\nThe answer is \\boxed{28}.",
            "wrong",
            "Step 3 is missing: it should be 14 * 2 = 28.",
        ),
        # garbage
        ("I think it is 28", "wrong", "Step 1 is missing: it should be 12 + 7 = 19."),
        ("", "wrong", "The final answer is missing; it should be 28."),
        # extra line
        (HAND_REF + "\nStep 4: 28 + 1 = 29.", "wrong", "The solution has extra lines after step 3."),
        # right final answer reached through a wrong expression
        (
            "Step 1: 12 + 7 = 19.\nStep 2: 20 - 6 = 14.\nStep 3: 14 * 2 = 28.\nThe answer is \\boxed{28}.",
            "wrong",
            "Step 2 is wrong: 19 - 5 = 14, not 20 - 6 = 14.",
        ),
        # all steps right, final line wrong
        (HAND_REF.replace("{28}", "{27}"), "wrong", "The final answer should be 28, not 27."),
    ],
)
def test_strong_teacher_malformed_responses(text: str, verdict: str, expected_line: str) -> None:
    c = critique(HAND, text, STRONG)
    assert c.verdict == verdict
    assert expected_line in c.text.split("\n")
    assert c.text.endswith(f"\nConclusion: {verdict} [END]")
    assert c.truthful == ((verdict == "right") == grade(text, HAND.answer))


def test_teacher_strength_validates() -> None:
    with pytest.raises(ValueError):
        TeacherStrength(miss_rate=1.2)


def test_teacher_solution() -> None:
    ps = generate("train", 400, seed=0)
    assert all(teacher_solution(p, STRONG) == p.reference_solution() for p in ps)
    sols = [teacher_solution(p, WEAK, seed=0) for p in ps]
    wrong = sum(not grade(s, p.answer) for s, p in zip(sols, ps)) / len(ps)
    assert 0.09 <= wrong <= 0.21, wrong
    assert sols == [teacher_solution(p, WEAK, seed=0) for p in ps]
    for s, p in zip(sols, ps):  # a slipped teacher solution is flagged by the strong teacher
        assert critique(p, s, STRONG).verdict == ("right" if grade(s, p.answer) else "wrong")


def test_make_slip_never_keeps_answer() -> None:
    for p in generate("val", 200, seed=0, min_steps=1, max_steps=6):
        slip = make_slip(p, stable_rng("slip", p.id))
        assert slip.final != p.answer and slip.steps[slip.first_error].result != p.steps[slip.first_error].result


# --------------------------------------------------------------------------- parse_verdict
@pytest.mark.parametrize(
    "text,expected",
    [
        ("Step 1 is fine.\nConclusion: right [END]", "right"),
        ("Step 1 is fine.\nConclusion: wrong [END]", "wrong"),
        ("The student's solution has errors.\n\nConclusion: incorrect [END]\n\n", "wrong"),
        ("The solution and final answer are completely correct.\n\nConclusion: correct [END]\n\n", "right"),
        ("Some text.\n\nConclusion: RIGHT [END]", "right"),
        ("conclusion: Wrong", "wrong"),
        ("Conclusion:right", "right"),
        ("Conclusion: right.", "right"),
        ("**Conclusion: right**", "right"),
        ("**Conclusion: wrong [END]**", "wrong"),
        ("Conclusion: **wrong**", "wrong"),
        ("**Conclusion:** incorrect", "wrong"),
        ("**Conclusion**: correct [END]", "right"),
        ("### Conclusion: wrong", "wrong"),
        ("...led to wrong numerical results. Conclusion: wrong [END]", "wrong"),  # inline, no newline
        ("Conclusion: The solution is incorrect.", "wrong"),
        ("Conclusion: The student's answer is correct. [END]", "right"),
        # the LAST conclusion wins
        ("Conclusion: right\nWait, step 2 is off.\nConclusion: wrong [END]", "wrong"),
        ("Conclusion: wrong\nOn reflection it is fine.\nConclusion: right [END]", "right"),
        # none
        ("The answer is right.", None),
        ("In conclusion, the answer is wrong.", None),
        ("Conclusion: partially correct", None),
        ("Conclusion: correctly handled but", None),
        ("", None),
    ],
)
def test_parse_verdict_table(text: str, expected: str | None) -> None:
    assert parse_verdict(text) == expected


# --------------------------------------------------------------------------- grading
@pytest.mark.parametrize(
    "text,expected",
    [
        ("The answer is \\boxed{28}.", "28"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{{a}{b{c}}}", "{a}{b{c}}"),
        ("first \\boxed{1}, then \\boxed{2}, finally \\boxed{3}.", "3"),
        ("\\boxed {7}", "7"),
        ("\\boxed{}", ""),
        ("no box here", None),
        ("", None),
        ("\\boxed{12", None),  # unclosed last box
        ("\\boxed{5} and then \\boxed{6", None),  # the last box is unclosed: no fallback
    ],
)
def test_extract_boxed_table(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "s,expected",
    [
        ("28", 28),
        (" 28 ", 28),
        ("28.0", 28),
        ("+28", 28),
        ("1,024", 1024),
        ("-3", -3),
        ("0", 0),
        ("28.00", 28),
        ("1,234,567", 1234567),
        (None, None),
        ("", None),
        ("28.5", None),
        ("1,02", None),
        ("abc", None),
        ("2 8", None),
        ("\\frac{1}{2}", None),
        ("28%", None),
        ("--3", None),
    ],
)
def test_parse_int_table(s: str | None, expected: int | None) -> None:
    assert parse_int(s) == expected


@pytest.mark.parametrize(
    "output,gold,expected",
    [
        (HAND_REF, 28, True),
        (HAND_REF, 27, False),
        ("\\boxed{27} no wait \\boxed{28}", 28, True),
        ("\\boxed{28} no wait \\boxed{27}", 28, False),
        ("The answer is 28.", 28, False),
        ("\\boxed{28.0}", 28, True),
        ("\\boxed{ 1,024 }", 1024, True),
        ("\\boxed{x}", 28, False),
    ],
)
def test_grade_table(output: str, gold: int, expected: bool) -> None:
    assert grade(output, gold) is expected
