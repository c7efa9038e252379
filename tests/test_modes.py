"""Self-critique inference modes (cft_lab.eval.modes): their control flow on a scripted stand-in model, batching,
seeds, resume in the middle of a round, grading of every round, and a real run through the pipeline.

``Scripted`` is a stand-in for a language model (a fake, named as such): the control flow of the modes is what is
tested, so each test scripts what the "model" answers at each round. It keeps the real generator's contract
(``generate(prompts, stops, seeds=..., n=..., max_new_tokens=..., desc=...)`` -> one list of ``Completion`` per
prompt) and tells the step and the round apart only from the prompt and the per-step seed, as a real model could
not but a deterministic script may."""

from __future__ import annotations

import json

import pytest

from cft_lab.config import InferenceConfig, SelfCritiqueConfig
from cft_lab.eval import benchmarks, engine, modes
from cft_lab.eval.generation import Completion
from cft_lab.options import InferenceMode, VerdictRule
from cft_lab.prompts import CFT_INSTRUCTION

BENCH = "testbed_2step"
TEMPLATE = "qwen25-math-cot"


class Scripted:
    """A scripted stand-in model. ``solve(item, round) -> answer`` and ``critique(item, round, solution) -> text``
    decide what it writes; every call's prompts, seeds and step kind are recorded."""

    def __init__(self, solve, critique=None, single=None, fail_after_calls=None):
        self.solve, self.critique, self.single = solve, critique, single
        self.calls: list[dict] = []
        self.fail_after_calls = fail_after_calls
        self.gold = {it["question"]: int(it["gold"]) for it in benchmarks.items(BENCH)}

    def _item(self, prompt: str) -> tuple[int, str]:
        for q, gold in self.gold.items():
            if q in prompt:
                return gold, q
        raise AssertionError(f"no question in {prompt[:80]!r}")

    def generate(self, prompts, stops, *, seeds=None, n=None, temperature=None, desc="", max_new_tokens=None):
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise RuntimeError("killed")  # stands in for an interruption
        kind = (
            "critique"
            if CFT_INSTRUCTION in prompts[0]
            else "single"
            if "critique your solution" in prompts[0]
            else "solve"
        )
        self.calls.append({"kind": kind, "prompts": list(prompts), "seeds": list(seeds), "stops": list(stops)})
        out = []
        for p, s in zip(prompts, seeds):
            gold, q = self._item(p)
            rnd = (s % (2 * modes.STRIDE * 16)) // (2 * modes.STRIDE)
            if kind == "solve":
                text = f"Step 1: work.\nThe answer is \\boxed{{{self.solve(gold, rnd)}}}."
            elif kind == "critique":
                solution = p.split("Solution:\n", 1)[1].split("<|im_end|>")[0]
                text = self.critique(gold, rnd, solution)
            else:
                text = self.single(gold)
            out.append([Completion(text, 10 + rnd, "stop")])
        return out


def _inference(mode: str, **sc) -> InferenceConfig:
    return InferenceConfig(
        name="t", mode=InferenceMode(mode), temperature=0.5, max_new_tokens=32, self_critique=SelfCritiqueConfig(**sc)
    )


def _run(gen, tmp_path, mode, limit=4, n=1, **sc) -> list[dict]:
    inf = _inference(mode, **sc)
    inf.n = n
    path = modes.generate_benchmark(gen, BENCH, TEMPLATE, tmp_path, inference=inf, limit=limit, seed=0)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _boxed(solution: str) -> int:
    return int(solution.split("\\boxed{")[1].split("}")[0])


def _perfect_critic(gold, rnd, solution):
    return "Checked.\nConclusion: " + ("right" if _boxed(solution) == gold else "wrong") + " [END]"


# ---- two-stage -------------------------------------------------------------------------------------------------


def test_two_stage_stops_after_a_right_verdict_and_batches_each_step(tmp_path):
    # item k is solved right at round k (0, 1, 2, 3): a perfect critic stops each chain there
    golds = [int(it["gold"]) for it in benchmarks.items(BENCH, 4)]
    first_right = {g: k for k, g in enumerate(golds)}
    gen = Scripted(solve=lambda gold, rnd: gold if rnd >= first_right[gold] else gold + 1, critique=_perfect_critic)
    rows = _run(gen, tmp_path, "two_stage", max_rounds=8)
    assert [r["trace"][0]["answer_round"] for r in rows] == [0, 1, 2, 3]
    assert all(r["trace"][0]["stop"] == "judged_right" for r in rows)
    assert all(_boxed(r["outputs"][0]["text"]) == g for r, g in zip(rows, golds))
    # one call per step over every unresolved chain: 4, then 3, 2, 1 chains left
    assert [(c["kind"], len(c["prompts"])) for c in gen.calls] == [
        ("solve", 4),
        ("critique", 4),
        ("solve", 3),
        ("critique", 3),
        ("solve", 2),
        ("critique", 2),
        ("solve", 1),
        ("critique", 1),
    ]
    assert gen.calls[1]["stops"] == modes.self_critique.OPEN_STOPS  # a critique keeps its "[END]"


def test_two_stage_round_limit_falls_back_to_the_last_solution(tmp_path):
    gen = Scripted(solve=lambda gold, rnd: gold + 1 + rnd, critique=lambda gold, rnd, sol: "Conclusion: wrong [END]")
    rows = _run(gen, tmp_path, "two_stage", limit=2, max_rounds=3)
    for r in rows:
        t = r["trace"][0]
        assert len(t["rounds"]) == 3 and t["answer_round"] == 2 and t["stop"] == "round_limit"
        assert r["outputs"][0]["text"] == t["rounds"][2]["solution"]
        assert all(x["critique"] for x in t["rounds"])  # the last round is critiqued too, as in the paper's loop
    assert len(gen.calls) == 6


@pytest.mark.parametrize(
    "critique,rule,rounds",
    [
        ("Conclusion: right [END]", "wrong", 1),
        ("**Conclusion: Correct [END]**", "wrong", 1),
        ("Critique Conclusion: Correct", "wrong", 1),
        ("Conclusion: **Critique Conclusion: Incorrect**", "wrong", 3),
        ("Conclusion: wrong [END]", "right", 3),
        ("I think it is fine.", "wrong", 3),  # unparsed: counts as wrong by default, the loop goes on
        ("I think it is fine.", "right", 1),  # unparsed counted as right: the loop stops
        ("Conclusion: right/wrong [END]", "wrong", 3),  # ambiguous is unparsed
    ],
)
def test_two_stage_reads_verdicts_in_the_forms_models_write(tmp_path, critique, rule, rounds):
    gen = Scripted(solve=lambda gold, rnd: gold, critique=lambda gold, rnd, sol: critique)
    rows = _run(gen, tmp_path, "two_stage", limit=1, max_rounds=3, unparsed_verdict=VerdictRule(rule))
    assert len(rows[0]["trace"][0]["rounds"]) == rounds


def test_seeds_per_item_round_sample_and_step_are_reproducible(tmp_path):
    solve = lambda gold, rnd: gold + rnd % 2
    a = Scripted(solve=solve, critique=lambda gold, rnd, sol: "Conclusion: wrong [END]")
    b = Scripted(solve=solve, critique=lambda gold, rnd, sol: "Conclusion: wrong [END]")
    rows_a = _run(a, tmp_path / "a", "two_stage", limit=3, n=2, max_rounds=2)
    rows_b = _run(b, tmp_path / "b", "two_stage", limit=3, n=2, max_rounds=2)
    assert rows_a == rows_b and [c["seeds"] for c in a.calls] == [c["seeds"] for c in b.calls]
    seeds = [s for c in a.calls for s in c["seeds"]]
    assert len(set(seeds)) == len(seeds) == 3 * 2 * 2 * 2  # items x samples x rounds x steps, all distinct
    # round 0's solutions are drawn with direct inference's seeds (seed + index * n + sample)
    assert a.calls[0]["seeds"] == [it["index"] * 2 + j for it in benchmarks.items(BENCH, 3) for j in range(2)]


def test_resume_in_the_middle_of_a_round_asks_only_the_missing_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "CHUNK", 2)  # a round of 5 chains is 3 calls
    solve = lambda gold, rnd: gold + (0 if rnd == 1 else 1)
    whole_gen = Scripted(solve=solve, critique=_perfect_critic)
    whole = _run(whole_gen, tmp_path / "whole", "two_stage", limit=5)
    killed = Scripted(solve=solve, critique=_perfect_critic, fail_after_calls=4)  # solve0 x3 done, critique0 1 of 3
    with pytest.raises(RuntimeError, match="killed"):
        _run(killed, tmp_path / "resumed", "two_stage", limit=5)
    assert (tmp_path / "resumed" / f"{BENCH}.events.jsonl").is_file()
    again = Scripted(solve=solve, critique=_perfect_critic)
    resumed = _run(again, tmp_path / "resumed", "two_stage", limit=5)
    steps = lambda gen: [(c["kind"], s) for c in gen.calls for s in c["seeds"]]  # a step's seed names it
    before, after = steps(killed), steps(again)
    assert len(before) == 5 + 2 and len(after) == 20 - 7  # 5 solves + 2 of 5 critiques were done when it died
    assert not set(before) & set(after) and len(set(after)) == len(after)  # nothing asked twice
    assert set(before) | set(after) == set(steps(whole_gen))
    assert resumed == whole
    assert not (tmp_path / "resumed" / f"{BENCH}.events.jsonl").exists()


def test_a_torn_last_event_is_dropped_and_redone(tmp_path):
    gen = Scripted(solve=lambda gold, rnd: gold, critique=_perfect_critic, fail_after_calls=1)
    with pytest.raises(RuntimeError):
        _run(gen, tmp_path, "two_stage", limit=3)
    events = tmp_path / f"{BENCH}.events.jsonl"
    events.write_text(events.read_text() + '{"i": 0, "j": 0, "rou')  # a kill in the middle of a write
    again = Scripted(solve=lambda gold, rnd: gold, critique=_perfect_critic)
    rows = _run(again, tmp_path, "two_stage", limit=3)
    assert [(c["kind"], len(c["prompts"])) for c in again.calls] == [("critique", 3)]
    assert all(r["trace"][0]["stop"] == "judged_right" for r in rows)


# ---- single pass and self-verified best-of-n ------------------------------------------------------------------


def test_single_pass_grades_the_last_box_and_keeps_the_initial_answer(tmp_path):
    def single(gold):
        return (
            f"Step 1: work.\nTherefore, my initial answer is \\boxed{{{gold + 1}}}.\nCritique:\nStep 1 is wrong."
            f"\nConclusion: wrong [END]\nBased on my critique, let me provide a corrected solution:\nCorrected "
            f"solution: \\boxed{{{gold}}}."
        )

    gen = Scripted(solve=None, single=single)
    rows = _run(gen, tmp_path, "single_pass", limit=3)
    assert [c["kind"] for c in gen.calls] == ["single"] and gen.calls[0]["stops"] == modes.self_critique.OPEN_STOPS
    t = rows[0]["trace"][0]
    assert t["flagged_wrong"] and t["has_correction"] and t["initial"].endswith(".")
    graded = engine.grade_benchmark(BENCH, rows, ["testbed"])
    assert all(g["correct"] for g in graded)  # the corrected (last) box is graded
    assert not any(g["samples"][0]["trace"]["initial_correct"] for g in graded)
    stats = engine.mode_stats(graded, "testbed")
    assert stats["mode"] == "single_pass" and stats["fixed"] == 3 and stats["broke"] == 0
    assert stats["flagged_wrong"] == 3 and stats["self_verdict_accuracy"] == 100.0


def test_self_verify_votes_among_candidates_judged_right(tmp_path):
    # candidates: gold+1 twice (judged wrong), gold once (judged right), gold+2 once (judged right, wrong)
    answers = {0: 1, 1: 1, 2: 0, 3: 2}
    gen = Scripted(
        solve=lambda gold, rnd: gold + answers[rnd],
        critique=lambda gold, rnd, sol: "Conclusion: " + ("right" if rnd in (2, 3) else "wrong") + " [END]",
    )
    rows = _run(gen, tmp_path, "self_verify", limit=2, candidates=4)
    assert [(c["kind"], len(c["prompts"])) for c in gen.calls] == [("solve", 8), ("critique", 8)]
    for r in rows:
        assert r["trace"][0]["stop"] == "voted_judged_right" and r["trace"][0]["answer_round"] == 2
    # a plain majority of all four would have picked gold+1
    graded = engine.grade_benchmark(BENCH, rows, ["testbed"])
    assert all(g["correct"] for g in graded)


# ---- grading every round -------------------------------------------------------------------------------------


def test_mode_stats_count_fixes_breaks_and_self_verdicts(tmp_path):
    # round 0 right, round 1 wrong, round 2 right; a critic that calls everything wrong: 3 rounds, answer = last
    gen = Scripted(solve=lambda gold, rnd: gold + (rnd % 2), critique=lambda gold, rnd, sol: "Conclusion: wrong [END]")
    rows = _run(gen, tmp_path, "two_stage", limit=4, max_rounds=3)
    graded = engine.grade_benchmark(BENCH, rows, ["testbed"])
    assert [x["correct"] for x in graded[0]["samples"][0]["trace"]["rounds"]] == [True, False, True]
    s = engine.aggregate(BENCH, graded, ["testbed"], n_boot=100)["inference"]
    assert s["mode"] == "two_stage" and s["mean_rounds"] == 3.0 and s["stops"] == {"round_limit": 4}
    assert (s["critiques"], s["verdicts_parsed"], s["self_verdict_accuracy"]) == (12, 12, round(100 * 4 / 12, 2))
    assert (s["rerolls"], s["reroll_fixed"], s["reroll_broke"]) == (8, 4, 4)
    assert (s["fixed"], s["broke"], s["first_accuracy"]) == (0, 0, 100.0)
    assert s["tokens_per_item"] == (10 + 11 + 12) * 2  # each round's solve and critique: 10 + round tokens


# ---- through the pipeline, on the tiny model -------------------------------------------------------------------


def test_two_stage_cell_runs_through_the_pipeline_and_shares_the_selection(outputs):
    from cft_lab.pipeline.cell import run_cell
    from cft_lab.pipeline.plan import plan_cell
    from conftest import SMOKE, compose

    direct = compose(SMOKE + [f"paths.outputs={outputs}", "eval.benchmarks=[testbed_2step]"])
    staged = compose(
        SMOKE
        + [
            f"paths.outputs={outputs}",
            "eval.benchmarks=[testbed_2step]",
            "inference.mode=two_stage",
            "inference.temperature=0.7",
            "inference.self_critique.max_rounds=2",
        ]
    )
    pd, ps = plan_cell(direct), plan_cell(staged)
    assert [pd.key_of(s) for s in ("data", "train", "select")] == [ps.key_of(s) for s in ("data", "train", "select")]
    assert pd.infer_keys()["testbed_2step"] != ps.infer_keys()["testbed_2step"]
    result = run_cell(staged)
    assert result["status"] == "ok", result.get("traceback")
    stats = result["scores"]["testbed_2step"]["inference"]
    assert stats["mode"] == "two_stage" and 1 <= stats["mean_rounds"] <= 2 and stats["critiques"] >= 6
    assert stats["tokens_per_item"] > 0
