"""cft_lab.eval.grading: gold parsing on every shipped item, the graders' traps per mode, timeouts, quirks, choices."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from cft_lab.eval.benchmarks.files import load
from cft_lab.eval.grading import (
    MODES,
    QUIRKS,
    Item,
    Verdict,
    extract_answer,
    gold_answer,
    gold_answers,
    gold_quirks,
    grade,
    grade_batch,
    grade_detail,
    mmlu_pro_fallback,
    question_suffix,
    quirk_counts,
    status_counts,
    strip_string,
)
from cft_lab.eval.grading.equal import CFT_ONLY_TAGS
from cft_lab.eval.grading.worker import default_worker
from grading_cases import CHOICE_CASES, MATH_CASES

MATH_COUNTS = {
    "math": 5000,
    "math500": 500,
    "minerva_math": 272,
    "gsm8k": 1319,
    "olympiadbench": 675,
    "aime24": 30,
    "amc23": 40,
    "theoremqa": 800,
}
# the golds the paper harness empties (record indices): MATH \mbox{Saturday}, \text{east}; MATH-500 \text{east}
PAPER_EMPTIES = {"math": [3526, 3607], "math500": [97]}
PAPER_GOLD_QUIRKS = {
    "math": {"unit_word_deleted": 16, "mbox_deleted": 1, "gold_emptied": 2},
    "math500": {"unit_word_deleted": 5, "gold_emptied": 1},
    "olympiadbench": {"unit_word_deleted": 8},
    "theoremqa": {"theoremqa_option_collapsed": 11},
}
PAPER_DIFFERS_FROM_STRICT = {"math": 17, "math500": 5, "olympiadbench": 8, "theoremqa": 11}
# a sympy expansion that runs for minutes, in little memory
HANG = ("The answer is $\\boxed{(x+y+z+w)^{40}}$.", "(x+y+z+w)^{41}")


@pytest.fixture(scope="module")
def warm_worker():
    """This process's symbolic worker, started (its start-up is never charged to an item's timeout)."""
    worker = default_worker()
    worker.call("ping", (), 120)
    return worker


# ------------------------------------------------------------------ gold answers


@pytest.mark.parametrize("bench", list(MATH_COUNTS))
def test_gold_of_every_item(bench):
    records = load(bench)
    assert len(records) == MATH_COUNTS[bench]
    paper = [gold_answer(bench, r, "paper") for r in records]
    strict = [gold_answer(bench, r, "strict") for r in records]
    raw = [gold_answer(bench, r, "math_verify") for r in records]
    assert [i for i, g in enumerate(paper) if g == ""] == PAPER_EMPTIES.get(bench, [])
    assert all(strict) and all(raw), "strict and math_verify golds are never empty"
    quirks = Counter(q for r in records for q in gold_quirks(bench, r))
    assert dict(quirks) == PAPER_GOLD_QUIRKS.get(bench, {})
    assert sum(p != s for p, s in zip(paper, strict)) == PAPER_DIFFERS_FROM_STRICT.get(bench, 0)
    assert set(quirks) <= set(QUIRKS)
    suffixes = Counter(question_suffix(bench, r) for r in records)
    assert suffixes == ({"": 684, " (True or False)": 116} if bench == "theoremqa" else {"": len(records)})


@pytest.mark.parametrize(
    "bench,index,paper,strict,raw,quirks",
    [
        ("math", 4864, "\\x", "\\secx", "\\sec x", ("unit_word_deleted",)),
        ("math", 2739, "\\frac{}{}", "\\frac{c}{a}", "\\frac{c}{a}", ("unit_word_deleted",)),
        ("math", 3607, "", "east", "\\text{east}", ("unit_word_deleted", "gold_emptied")),
        ("math", 3526, "", "Saturday", "\\mbox{Saturday}", ("mbox_deleted", "gold_emptied")),
        ("math500", 96, "1\\\\sqrt{19}", "1\\pm\\sqrt{19}", "1 \\pm \\sqrt{19}", ("unit_word_deleted",)),
        ("theoremqa", 90, "()", "(a)", "(a)", ("theoremqa_option_collapsed",)),
        ("theoremqa", 38, "4e-05", "4e-05", "4e-05", ()),
        ("gsm8k", 146, "2,125", "2,125", "2,125", ()),  # thousands commas stay
        ("aime24", 7, "25", "25", "025", ()),
        ("amc23", 0, "27", "27", "27.0", ()),
        ("olympiadbench", 1, "\\frac{1}{2n+2}", "\\frac{1}{2n+2}", "$\\frac{1}{2 n+2}$", ()),
        (
            "minerva_math",
            139,
            "\\lambda_{\\text{red}}/\\sqrt{2}",
            "\\lambda_{\\text{red}}/\\sqrt{2}",
            "\\lambda_{\\text {red}} / \\sqrt{2}",
            (),
        ),
    ],
)
def test_known_golds(bench, index, paper, strict, raw, quirks):
    record = load(bench)[index]
    assert gold_answers(bench, record) == {"paper": paper, "strict": strict, "math_verify": raw}
    assert gold_quirks(bench, record) == quirks


@pytest.mark.parametrize(
    "bench,record,message",
    [
        ("gpqa", {}, "registry"),
        ("mmlu_pro", {"answer": "A"}, "registry"),
        ("math", {"problem": "1+1"}, "'solution'"),
        ("math", {"solution": "It is 2."}, "boxed"),
        ("gsm8k", {"answer": "no marker 5"}, "####"),
        ("olympiadbench", {"final_answer": []}, "final_answer"),
        ("aime24", {"answer": "  "}, "empty"),
        ("nope", {"answer": "1"}, "unknown benchmark"),
    ],
)
def test_gold_errors_name_benchmark_and_field(bench, record, message):
    with pytest.raises(ValueError, match=message):
        gold_answer(bench, record)


# ------------------------------------------------------------------ the graders, mode by mode


@pytest.mark.parametrize("case", MATH_CASES, ids=[c[0] for c in MATH_CASES])
def test_math_cases(case, warm_worker):
    _, output, gold, bench, expected, paper_quirks = case
    for mode, want in expected.items():
        v = grade_detail(output, gold, bench, mode)
        assert (v.correct, v.status) == (want, "ok"), f"{mode}: {v}"
        assert set(v.quirks) <= set(QUIRKS)
        if mode == "paper":
            assert set(paper_quirks) <= set(v.quirks), v
        else:
            assert not CFT_ONLY_TAGS.intersection(v.quirks), f"{mode} must not carry CFT-only quirks: {v}"


@pytest.mark.parametrize("case", CHOICE_CASES, ids=[c[0] for c in CHOICE_CASES])
def test_choice_cases(case, warm_worker):
    _, output, gold, bench, n_options, expected, paper_quirks, extracted = case
    for mode, want in expected.items():
        v = grade_detail(output, gold, bench, mode, n_options=n_options)
        assert (v.correct, v.status) == (want, "ok"), f"{mode}: {v}"
        assert set(paper_quirks) <= set(v.quirks) if mode == "paper" else not v.quirks
    for mode, letter in extracted.items():
        assert extract_answer(output, bench, mode) == letter


def test_mmlu_pro_fallback_is_the_seeded_guess():
    import random

    for n in range(1, 11):
        random.seed(12345)
        assert mmlu_pro_fallback(n) == "ABCDEFGHIJ"[random.randint(0, n - 1)]
    # no letter and no option count: an error that says what is missing, not a silent guess
    v = grade_detail("No idea.", "G", "mmlu_pro", "paper")
    assert v.status == "error" and "n_options" in v.error and not v.correct


def test_grade_and_api_errors(warm_worker):
    assert grade("$\\boxed{\\dfrac{1}{2}}$", "\\frac{1}{2}", "math") is True
    assert grade("$\\boxed{3}$", "\\frac{1}{2}", "math", "math_verify") is False
    with pytest.raises(ValueError, match="unknown benchmark"):
        grade_detail("1", "1", "mathx")
    with pytest.raises(ValueError, match="unknown grading mode"):
        grade_detail("1", "1", "math", "lenient")
    v = grade_detail("The answer is (E).", "E", "gpqa")
    assert v.status == "error" and "gpqa" in v.error
    v = grade_detail("$\\boxed{1}$", {"paper": "1"}, "math", "strict")
    assert v.status == "error" and "'strict'" in v.error


def test_strip_string_and_extract_answer():
    assert strip_string("\\sec x", "math") == "\\x"
    assert strip_string("\\sec x", "math", "strict") == "\\secx"
    assert strip_string("5 cm", "math") == "5" and strip_string("5 cm", "math", "strict") == "5"
    assert strip_string("5 cm", "minerva_math") == "5cm"  # minerva keeps units
    assert strip_string("\\left( 3, \\dfrac{\\pi}{2} \\right)", "math") == "(3,\\frac{\\pi}{2})"
    out = "First $x=2$. Final Answer: The final answer is $\\dfrac{1}{2}$. I hope it is correct."
    assert extract_answer(out, "math") == "\\frac{1}{2}"
    assert extract_answer("we get 1,234 and then 5,678 apples", "gsm8k") == "5678"
    assert extract_answer("so \\boxed{\\dfrac{1}{2}}", "math", "math_verify") == "\\frac{1}{2}"


def test_parse_expr_refuses_builtins():
    from cft_lab.eval.grading.equal import _expr

    with pytest.raises(ValueError, match="builtins"):
        _expr("__import__('os').getpid()")
    assert str(_expr("x + 1")) == "x + 1"


# ------------------------------------------------------------------ timeouts and batches


@pytest.mark.parametrize("mode", MODES)
def test_timeout_in_one_process(mode, warm_worker):
    warm_worker.call("ping", (), 120)  # a replacement from an earlier timeout is ready
    start = time.monotonic()
    v = grade_detail(HANG[0], HANG[1], "math", mode, timeout=1.0)
    elapsed = time.monotonic() - start
    assert v.status == "timeout" and not v.correct and "1s" in v.error, v
    assert elapsed < 1.0 + 2.0
    # the killed worker was replaced: the next item is graded normally
    assert grade_detail("$\\boxed{x^2+2x+1}$", "(x+1)^2", "math", mode).correct


def test_math_verify_off_the_main_thread(warm_worker):
    # math-verify's own signal-based timeout would fail (or silently return False) in a thread; ours is a process
    outputs = ["$\\boxed{0.5}$", "$\\boxed{\\frac{2}{4}}$", "$\\boxed{3}$", "$\\boxed{\\sqrt{1/4}}$"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts = list(pool.map(lambda o: grade_detail(o, "\\frac{1}{2}", "math", "math_verify"), outputs))
    assert [(v.correct, v.status) for v in verdicts] == [(True, "ok"), (True, "ok"), (False, "ok"), (True, "ok")]


def test_grade_batch_in_process_timeout(warm_worker):
    warm_worker.call("ping", (), 120)
    start = time.monotonic()
    [row] = grade_batch([(HANG[0], HANG[1], "math")], modes=("paper",), timeout=1.0, workers=1, progress=False)
    assert time.monotonic() - start < 1.0 + 2.0
    assert row["paper"].status == "timeout" and not row["paper"].correct


def test_grade_batch_pool_order_timeouts_and_counts():
    cases = [c for c in MATH_CASES if c[1]][:10]
    rows = [
        (out, gold if isinstance(gold, dict) else {m: gold for m in MODES}, bench)
        for _, out, gold, bench, _, _ in cases
    ]
    rows.insert(4, (HANG[0], {m: HANG[1] for m in MODES}, "math"))
    rows.append(Item("No idea.", {m: "G" for m in MODES}, "mmlu_pro", n_options=10))
    rows.append(("$\\boxed{(a)}$", gold_answers("theoremqa", load("theoremqa")[90]), "theoremqa"))
    start = time.monotonic()
    results = grade_batch(rows, timeout=1.0, workers=2, progress=False)
    # two spawned processes start (imports + their symbolic workers) before grading
    assert time.monotonic() - start < 90
    assert len(results) == len(rows)
    expected = [c[4] for c in cases]
    expected.insert(4, {m: False for m in MODES})
    expected += [{"paper": True, "strict": False, "math_verify": False}, {m: True for m in MODES}]
    assert [{m: v.correct for m, v in r.items()} for r in results] == expected
    assert {m: v.status for m, v in results[4].items()} == {m: "timeout" for m in MODES}
    counts = status_counts(results)
    assert {m: (c["timeout"], c["error"], c["ok"]) for m, c in counts.items()} == {
        m: (1, 0, len(rows) - 1) for m in MODES
    }
    assert results[-2]["paper"].quirks == ("fallback_guess",)


@pytest.mark.slow
def test_benchmark_script_runs():
    from cft_lab.perf.grading import main

    assert main(["--per-benchmark", "2", "--workers", "2"]) == 0


def test_grade_batch_rejects_bad_rows():
    with pytest.raises(ValueError, match="row 1"):
        grade_batch([("1", "1", "math"), ("1", "1")], progress=False)
    with pytest.raises(ValueError, match="row 0.*unknown benchmark"):
        grade_batch([("1", "1", "algebra")], progress=False)


# ------------------------------------------------------------------ quirk accounting


def test_quirk_counts_on_known_items(warm_worker):
    theorem, sec = load("theoremqa")[90], load("math")[4864]
    verdicts = [
        grade_detail(
            "$\\boxed{(a)}$",
            gold_answer("theoremqa", theorem),
            "theoremqa",
            gold_quirks=gold_quirks("theoremqa", theorem),
        ),
        grade_detail(
            "$\\boxed{(d)}$",
            gold_answer("theoremqa", theorem),
            "theoremqa",
            gold_quirks=gold_quirks("theoremqa", theorem),
        ),
        grade_detail("$\\boxed{\\sec x}$", gold_answer("math", sec), "math", gold_quirks=gold_quirks("math", sec)),
        grade_detail("The final answer is 0.12", "0.14", "gsm8k"),
        grade_detail("The final answer is 0.14", "0.14", "gsm8k"),
        grade_detail("$\\boxed{7}$", "8", "math"),
    ]
    assert [v.correct for v in verdicts] == [True, True, True, True, True, False]
    counts = quirk_counts(verdicts)
    assert set(counts) == set(QUIRKS)
    assert {k: n for k, n in counts.items() if n} == {
        "theoremqa_option_collapsed": 2,
        "unit_word_deleted": 3,
        "round_one_decimal": 1,
    }
    strict = [
        grade_detail(
            "$\\boxed{(d)}$",
            gold_answer("theoremqa", theorem, "strict"),
            "theoremqa",
            "strict",
            gold_quirks=gold_quirks("theoremqa", theorem),
        )
    ]
    assert not strict[0].correct and quirk_counts(strict) == {k: 0 for k in QUIRKS}
    assert isinstance(verdicts[0], Verdict)


# ------------------------------------------------------------------ long outputs (issue 13, item 9)


def test_the_long_output_set_is_chains_of_thought_of_300_to_2000_tokens_ending_in_their_own_solution():
    from cft_lab.perf.grading import CHARS_PER_TOKEN, long_outputs

    rows, inputs = long_outputs(30, seed=3)
    assert len(rows) == 90 and inputs["items"] == 90
    solutions = {r["solution"] for r in load("math")}
    for k in range(0, 90, 3):
        own, equivalent, perturbed = rows[k : k + 3]
        assert own[0] == equivalent[0] == perturbed[0] and (own[3], equivalent[3], perturbed[3]) == (True, True, False)
        assert 300 <= len(own[0]) / CHARS_PER_TOKEN <= 2000
        assert any(own[0].endswith(s) for s in solutions)  # the problem's own solution ends the output
        assert own[0].count("\\boxed") == own[0].rsplit("Now, for this problem: ", 1)[1].count("\\boxed")
        assert set(own[1]) == set(perturbed[1]) == {"paper", "strict", "math_verify"}
    assert 300 <= inputs["tokens"]["min"] <= inputs["tokens"]["median"] <= inputs["tokens"]["max"] <= 2000


def test_the_grading_benchmark_reports_items_per_s_per_mode_on_long_outputs(capsys):
    import re

    from cft_lab.perf.grading import main

    assert main(["--per-benchmark", "1", "--no-batch", "--long", "20", "--timeout", "3"]) == 0
    said = capsys.readouterr().out
    assert "long outputs: 60 items = 20 MATH" in said and "sample golds:" in said
    for mode in ("paper", "strict", "math_verify"):
        m = re.search(rf"^{mode} +([\d.]+) .* long; (>=|UNDER) 200 items/s; verdicts unlike the expected: (.*)$", said,
                      re.M)  # fmt: skip
        assert m, said
        assert float(m.group(1)) > 0
        assert "'own gold': 0" in m.group(3) and "'perturbed gold': 0" in m.group(3), m.group(0)
