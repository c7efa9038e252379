"""Training seeds: ``run.seeds=N`` makes N cells per trained row; the tables pool them (mean, sd across seeds, CI over
items x seeds) and test CFT against the best SFT row over items x seeds, checked against hand-computed values."""

from __future__ import annotations

import math

import pytest

from cft_lab.eval.metrics import bootstrap_ci
from cft_lab.eval.replicates import paired_over_seeds, seed_summary
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.seeds import seed_configs
from cft_lab.pipeline.store import Store, write_json, write_jsonl
from conftest import compose


def test_seed_configs_make_one_cell_per_training_seed():
    cfg = compose(["train=tiny", "run.seeds=3", "objective=sft"])
    cells = seed_configs(cfg)
    assert [c.train.seed for c in cells] == [42, 43, 44]
    plans = [plan_cell(c) for c in cells]
    assert len({p.key_of("train") for p in plans}) == 3 and len({p.key_of("data") for p in plans}) == 1
    assert plans[0].key == plan_cell(compose(["train=tiny", "objective=sft"])).key  # seed 0 is the one-seed cell
    assert len(seed_configs(compose(["train=tiny", "run.seeds=3", "objective=base"]))) == 1
    with pytest.raises(Exception, match="run.seeds=0"):
        compose(["run.seeds=0"])


def test_seed_summary_against_hand_computed_values():
    grades = [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]]  # seed accuracies 60, 20, 80
    s = seed_summary(grades, n_boot=2000, seed=3)
    assert s["seed_accuracies"] == [60.0, 20.0, 80.0] and s["mean"] == pytest.approx(160 / 3)
    assert s["sd"] == pytest.approx(math.sqrt(((60 - 160 / 3) ** 2 + (20 - 160 / 3) ** 2 + (80 - 160 / 3) ** 2) / 2))
    assert (s["seeds"], s["n"], s["correct"]) == (3, 5, 8)
    lo, hi = bootstrap_ci([1.0, 2 / 3, 2 / 3, 1 / 3, 0.0], n_boot=2000, seed=3)  # items resampled with their seeds
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((100 * lo, 100 * hi))
    same = seed_summary([[1, 0, 1], [1, 0, 1]])  # identical seeds: no spread, a CI wider than a point
    assert same["sd"] == 0.0 and same["ci_low"] < same["mean"] < same["ci_high"]
    assert math.isnan(seed_summary([[1, 0]])["sd"])
    with pytest.raises(ValueError):
        seed_summary([[1, 0], [1]])


def test_paired_over_seeds_against_hand_computed_values():
    a = [[1, 1, 1, 0, 0, 1], [1, 0, 1, 0, 1, 1]]
    b = [[1, 1, 1, 1, 1, 0], [1, 1, 0, 1, 1, 1]]
    r = paired_over_seeds(a, b, n_boot=2000, seed=1)
    # seed 0: B-only items 3, 4; A-only item 5. seed 1: B-only items 1, 3; A-only item 2. -> b01 = 4, b10 = 2
    assert (r["pairs"], r["b01"], r["b10"]) == (12, 4, 2)
    assert r["p_value"] == pytest.approx(2 * (1 + 6 + 15) / 2**6)  # 2 P(X <= 2), X ~ Bin(6, 1/2) = 0.6875
    assert r["diff"] == pytest.approx(100 * 2 / 12) and r["accuracy_b"] - r["accuracy_a"] == pytest.approx(r["diff"])
    lo, hi = bootstrap_ci([0, 0.5, -0.5, 1, 0.5, -0.5], n_boot=2000, seed=1)  # per-item mean differences
    assert (r["diff_low"], r["diff_high"]) == pytest.approx((100 * lo, 100 * hi))
    with pytest.raises(ValueError, match="same seeds x items"):
        paired_over_seeds(a, b[:1])


# Per benchmark, 4 items; the same pattern in each of the 4 columns. Seeds: (seed 42, seed 43).
PATTERNS = {
    "base": [[1, 0, 0, 0]],
    "sft": [[1, 1, 0, 0], [1, 0, 0, 0]],  # 50, 25 -> 37.5 (sd 17.7)
    "sft_verified": [[0, 0, 0, 0], [0, 0, 0, 0]],
    "sft_teacher": [[1, 1, 1, 0], [1, 1, 1, 0]],  # 75, 75: the best SFT row
    "cft": [[1, 1, 1, 1], [1, 1, 0, 1]],  # 100, 75 -> 87.5 (sd 17.7)
}


def _fake_cells(outputs, configs):
    """Write result.json and graded rows of every seed cell of every row, from PATTERNS."""
    store = Store(outputs)
    for cfg in configs:
        for i, cell in enumerate(seed_configs(cfg)):
            key, grades = plan_cell(cell).key, PATTERNS[cfg.objective.name][i]
            scores = {}
            for bench in cell.eval.benchmarks:
                rows = [
                    {"id": f"{bench}-{j}", "correct": bool(g), "samples": [{"pred": {"testbed": "7" if j else ""}}]}
                    for j, g in enumerate(grades)
                ]
                write_jsonl(store.path("grade", key) / f"{bench}.jsonl", rows)
                label = {"testbed_2step": "2-step", "testbed_3step": "3-step", "testbed_4step": "4-step"}.get(
                    bench, "5-step (OOD)"
                )
                correct = sum(grades)
                scores[bench] = {"label": label, "correct": correct, "n": 4, "ci_low": 0.0, "ci_high": 100.0}
            compute = {"loss_tokens": 100 + 20 * i, "attended_tokens": 300, "optimizer_steps": 10, "flops": 6e12}
            result = {
                "status": "ok",
                "key": key,
                "scores": scores,
                "compute": compute,
                "answer_format": {"share": 75.0},
            }
            write_json(store.path("cells", key) / "result.json", result)


def test_a_seeded_table_pools_seeds_and_tests_cft_over_items_and_seeds(outputs, tmp_path):
    from cft_lab.report import tables

    overrides = ["train=tiny", "run.seeds=2", "run.show_compute=true", f"paths.outputs={outputs}"]
    _fake_cells(outputs, tables.expand("demo", overrides))
    out = tables.render("demo", overrides, out_dir=tmp_path, quiet=True)
    frame, md = out["frame"], out["paths"]["md"].read_text()
    model = frame.index[0][0]
    sd = 25 / math.sqrt(2)
    assert frame.loc[(model, "WebInstruct-CFT"), "AVG"] == pytest.approx(87.5)
    assert frame.attrs["sd"][((model, "WebInstruct-CFT"), "2-step")] == pytest.approx(sd)
    assert frame.attrs["sd"][((model, "WebInstruct-CFT"), "AVG")] == pytest.approx(sd)  # per-seed AVGs 100, 75
    assert frame.attrs["sd"][((model, "WebInstruct-GPT4o-SFT"), "AVG")] == 0.0
    assert not [k for k in frame.attrs["sd"] if k[0][1] == "Base"]  # Base: one cell, no spread
    lo, hi = bootstrap_ci([1.0, 1.0, 0.5, 1.0], n_boot=10000, seed=0)
    assert f"87.5 (sd {sd:.1f}) [{100 * lo:.1f}, {100 * hi:.1f}]" in md
    assert frame.loc[(model, "Δ = CFT − SFT_best"), "AVG"] == pytest.approx(87.5 - 75.0)
    # CFT vs teacher-SFT over 16 items x 2 seeds: per column b01 = 2 (item 3, both seeds), b10 = 1 (item 2, seed 43)
    paired = frame.attrs["paired"][model]
    assert paired["baseline"] == "WebInstruct-GPT4o-SFT" and (paired["pairs"], paired["b01"], paired["b10"]) == (
        32,
        8,
        4,
    )
    p = 2 * sum(math.comb(12, k) for k in range(5)) / 2**12  # 0.3877
    assert paired["p_value"] == pytest.approx(p) and paired["diff"] == pytest.approx(12.5)
    assert f"McNemar p = {p:.2g}" in md and "= 32 pairs" in md and "+12.5 points" in md
    # the compute columns: means over the seeds (loss tokens 100 and 120), TFLOPs = flops / 1e12
    assert (
        frame.loc[(model, "WebInstruct-CFT"), "Loss tokens"] == 110
        and frame.loc[(model, "WebInstruct-CFT"), "TFLOPs"] == 6
    )
    assert frame.loc[(model, "WebInstruct-CFT"), "Parsed %"] == 75.0 and "| 110 |" in md
