"""Data efficiency (``make data_efficiency SCALE=tiny``): the sweep's cells laid out as (arm, records) rows with the
mean over seeds and its sd, the Base row once, what each arm trained on, and the AVG-vs-records plot, from a store."""

from __future__ import annotations

import pytest

from cft_lab.eval import benchmarks
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.seeds import seed_configs
from cft_lab.pipeline.store import Store, write_json, write_jsonl

SIZES = (250, 500, 1000, 2000)
OVERRIDES = ["train=tiny", "run.seeds=2"]  # the plain recipe: the layout does not depend on tuned values


def grades(method: str, n: int, seed: int) -> list[int]:
    """4 items per benchmark (the same in every column): right answers grow with N; CFT's 2000 differs by seed."""
    if method == "base":
        return [1, 0, 0, 0]
    right = {"sft": {250: 1, 500: 2, 1000: 2, 2000: 3}, "cft": {250: 0, 500: 1, 1000: 3, 2000: 4 - seed}}
    k = right.get(method, {}).get(n, 2)
    return [1] * k + [0] * (4 - k)


def write_cells(outputs, configs) -> None:
    store = Store(outputs)
    for cfg in configs:
        for i, cell in enumerate(seed_configs(cfg)):
            key, g = plan_cell(cell).key, grades(cfg.objective.name, cfg.data.testbed.n_train, i)
            scores = {}
            for bench in cell.eval.benchmarks:
                rows = [{"id": f"{bench}-{j}", "correct": bool(x), "samples": [{"pred": {}}]} for j, x in enumerate(g)]
                write_jsonl(store.path("grade", key) / f"{bench}.jsonl", rows)
                label = benchmarks.label(bench)  # as a cell's result.json holds it
                scores[bench] = {"label": label, "correct": sum(g), "n": 4, "ci_low": 0.0, "ci_high": 100.0}
            examples = cfg.data.testbed.n_train // (2 if cfg.objective.name == "sft_verified" else 1)
            result = {"status": "ok", "key": key, "scores": scores}
            if cfg.objective.name != "base":
                result["train_examples"] = {"examples": examples}
            write_json(store.path("cells", key) / "result.json", result)


def test_the_sweep_is_every_arm_at_every_size(outputs):
    from cft_lab.report import tables

    configs = tables.expand("data_efficiency_tiny", [*OVERRIDES, f"paths.outputs={outputs}"])
    got = sorted((c.objective.name, c.data.testbed.n_train) for c in configs)
    arms = ("base", "cft", "sft", "sft_teacher", "sft_verified")
    assert got == sorted((a, n) for a in arms for n in SIZES)
    assert {c.model.name for c in configs} == {"tiny_math"} and {c.run.table for c in configs} == {"data_efficiency"}
    # prefix-stable sizes: a smaller set's data differs from the larger one's (its own key), Base trains nothing
    data_keys = {plan_cell(c).key_of("data") for c in configs if c.objective.name == "sft"}
    assert len(data_keys) == 4
    base_keys = {plan_cell(c).key for c in configs if c.objective.name == "base"}
    assert len(base_keys) == 1  # the untrained model's cell does not depend on N


def test_layout_and_plot_from_a_store(outputs, tmp_path):
    from matplotlib.image import imread

    from cft_lab.report import tables
    from cft_lab.report.efficiency import BASE_N

    overrides = [*OVERRIDES, f"paths.outputs={outputs}"]
    write_cells(outputs, tables.expand("data_efficiency_tiny", overrides))
    out = tables.render("data_efficiency_tiny", overrides, out_dir=tmp_path, quiet=True)
    frame = out["frame"]
    arms = list(dict.fromkeys(frame.index.get_level_values(0)))
    assert arms[0] == "Base" and [r for r in frame.index if r[0] == "Base"] == [("Base", BASE_N)]
    cft = [r for r in frame.index if r[1] != BASE_N and r[0] == arms[-1]]
    assert [r[1] for r in cft] == [str(n) for n in SIZES]  # rows by N within an arm
    assert frame.loc[("Base", BASE_N), "AVG"] == 25.0
    assert [frame.loc[r, "AVG"] for r in cft] == [0.0, 25.0, 75.0, pytest.approx(87.5)]  # 2000: seeds 100, 75
    assert frame.attrs["sd"][(cft[-1], "AVG")] == pytest.approx(25 / 2**0.5)
    assert frame.attrs["sd"][(cft[0], "AVG")] == 0.0
    verified = [r for r in frame.index if r[1] == "1000" and "verified" in r[0]]
    assert len(verified) == 1 and frame.loc[verified[0], "Examples"] == 500  # what the arm actually trained on
    png = out["paths"]["curve_png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(png).shape[:2] == (462, 770)  # 7.0 x 4.2 in at 110 dpi
    md = out["paths"]["md"].read_text()
    assert "87.5" in md and "records" in md
