"""Comparison tables (issue 11, items 3, 4, 8): quoted cells in every output format, Table 3 and the RL comparison
(with the compute ledger measured from the store), their paper-scale dry runs and tiny twins."""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import pytest

from cft_lab.pipeline.plan import plan_cell
from cft_lab.report.comparisons import ALL_H, QUOTED, TRAIN_H, rl_comparison_frame, table3_frame
from cft_lab.report.frames import BenchScore, CellResult
from cft_lab.report.render import write_table
from conftest import SMOKE, compose, run_paper_dry_run

T3 = ["MATH", "GPQA", "TheoremQA", "MMLU-Pro", "OlympiadBench", "AIME24", "AMC23"]


def cell(label, group, scores, source="api", **kw):
    return CellResult(
        model=label,
        method="base",
        teacher=None,
        status="ok",
        error=None,
        scores={b: BenchScore(c, n, 0.0, 100.0) for b, (c, n) in scores.items()},
        key=f"k-{label[:6]}",
        label=label,
        group=group,
        model_source=source,
        **kw,
    )


def test_quoted_cells_are_marked_in_every_format_and_never_averaged(tmp_path):
    gpt = cell("GPT-4o (2024-08-06)", "Frontier", {b: (3, 30) if b == "AIME24" else (1, 2) for b in T3})
    frame = table3_frame([gpt], T3)
    gpt_row, rstar = ("Frontier", "GPT-4o (2024-08-06)"), ("Initialized from Qwen2.5-Math-7B-Base", "rStar-Math@Greedy")
    assert frame.loc[gpt_row, "AIME24"] == 10.0  # the measured value, not the quoted 9.3
    assert frame.loc[gpt_row, "AVG"] == pytest.approx((10.0 + 6 * 50.0) / 7)  # only measured values
    assert pd.isna(frame.loc[rstar, "MATH"])  # a quoted-only row holds no measured number
    assert frame.attrs["quoted"][(rstar, "MATH")]["value"] == 78.4
    assert rstar not in frame.attrs["notes"]  # quoted, not a hole
    paths = write_table(frame, tmp_path, "t3", "Table 3")
    md, tex = paths["md"].read_text(), paths["tex"].read_text()
    assert "10.0 [0.0, 100.0] (quoted 9.3‡)" in md  # measured beside quoted
    assert "| rStar-Math@Greedy | 78.4‡ |" in md and "x‡ = quoted" in md
    assert r"78.4\ddag{}" in tex and "quoted, not measured" in tex
    csv = pd.read_csv(paths["csv"])
    rs = csv[(csv.model == "rStar-Math@Greedy") & (csv.benchmark == "MATH")].iloc[0]
    assert rs.status == "quoted" and rs.quoted == 78.4 and "rStar-Math" in rs.quoted_from and pd.isna(rs.accuracy)
    g = csv[(csv.model == "GPT-4o (2024-08-06)") & (csv.benchmark == "AIME24")].iloc[0]
    assert g.status == "ok" and g.accuracy == 10.0 and g.quoted == 9.3
    # every quoted cell the registry names exists in the paper's table
    assert len([k for k in frame.attrs["quoted"] if k[0][1] != "rStar-Math@Greedy"]) == len(QUOTED["table3"]) - 1


def test_at_tiny_scale_nothing_is_quoted():
    tiny = cell("tiny-math (≈Qwen2.5-Math-Base)", "Testbed bases", {"2-step": (1, 2)}, source="testbed")
    frame = table3_frame([tiny], ["2-step"])
    assert list(frame.index) == [("Testbed bases", "tiny-math (≈Qwen2.5-Math-Base)")] and not frame.attrs["quoted"]


def test_the_rl_table_quotes_simplerl_and_shows_our_device_hours(tmp_path):
    bench = ["MATH-500", "Minerva-Math", "OlympiadBench", "AIME24", "AMC23"]
    led = {
        "stages": [{"stage": "train"}],
        "device_hours": {"NVIDIA H100 80GB HBM3": 9.5},
        "train_device_hours": {"NVIDIA H100 80GB HBM3": 8.25},
        "unrecorded": [],
    }
    cft = cell("Qwen2.5-Math-7B", "x", {b: (1, 2) for b in bench}, source="hub", ledger=led)
    cft.method, cft.label = "cft", None
    frame = rl_comparison_frame([cft], bench)
    assert (
        frame.loc[("Qwen2.5-Math-7B", "CFT"), TRAIN_H] == 8.25 and frame.loc[("Qwen2.5-Math-7B", "CFT"), ALL_H] == 9.5
    )
    assert frame.attrs["quoted"][(("Qwen2.5-Math-7B", "SimpleRL"), TRAIN_H)]["value"] == 1152
    md = write_table(frame, tmp_path, "rl", "RL")["md"].read_text()
    assert "| SimpleRL | 82.4‡ |" in md and "1152.00‡" in md and "NVIDIA H100 80GB HBM3" in md


def test_the_store_records_each_builds_device_time_and_the_ledger_sums_it(outputs):
    from cft_lab.pipeline.cell import run_cell
    from cft_lab.pipeline.store import DONE, Store
    from cft_lab.report.ledger import cell_ledger, hours

    cfg = compose(SMOKE + [f"paths.outputs={outputs}", "eval.benchmarks=[testbed_2step]", "data.testbed.n_train=24"])
    assert run_cell(cfg)["status"] == "ok"
    store, plan = Store(outputs), plan_cell(cfg)
    builds = {s.stage: json.loads((store.path(s.stage, s.key) / DONE).read_text())["build"] for s in plan.stages}
    assert set(builds) == {"data", "train", "select", "infer", "grade"}
    assert all(b["wall_s"] > 0 and b["devices"] == 1 and b["device_type"] == "cpu" for b in builds.values())
    led = cell_ledger(cfg)
    assert not led["unrecorded"] and led["train_device_hours"]["cpu"] == pytest.approx(hours(builds["train"]), abs=1e-5)
    assert led["device_hours"]["cpu"] == pytest.approx(sum(hours(b) for b in builds.values()), abs=1e-5)


def test_a_resumed_build_counts_the_time_of_the_interrupted_attempt(tmp_path):
    from cft_lab.pipeline.store import DONE, Store

    store = Store(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with store.claim("infer", "k1", resume=True) as art:
            (art.path / "part.jsonl").write_text("{}\n")
            time.sleep(0.3)
            raise KeyboardInterrupt
    with store.claim("infer", "k1", resume=True) as art:
        art.meta["devices"] = 4
    build = json.loads((store.path("infer", "k1") / DONE).read_text())["build"]
    assert build["wall_s"] >= 0.3 and build["devices"] == 4 and not (store.path("infer", "k1") / ".build_s").exists()


def test_table3_and_the_rl_table_dry_run_at_paper_scale(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    pinned = ["data.source.revision=" + "0" * 40, "model.allow_unpinned=true"]
    proc = run_paper_dry_run(["cft_lab", "table=table3", "dry_run=true", *pinned], tmp_path, timeout=600)
    out = proc.stdout
    assert "table3: 14 cells" in out
    assert "cell gpt4o_0806/base" in out and "openai API (api.openai.com)" in out
    assert "API requests: 18774 to buy" in out  # 18775 prompts, two of them identical: one request
    # an API model starts no local engine: vLLM missing or not, its cells are not refused
    assert not re.search(r"cell\(s\) failed: .*(gpt4o_0806|o1_mini)/base", out + proc.stderr)
    assert "cell llama3_1_70b_instruct/base" in out and "vllm TP=4" in out
    assert "through the model's chat template" in out and "cell qwen2_5_math_7b/cft" in out
    out = run_paper_dry_run(["cft_lab", "table=rl_comparison", "dry_run=true", *pinned], tmp_path, timeout=300).stdout
    assert "rl_comparison: 1 cells" in out and "math500 500, minerva_math 272" in out
    assert not (tmp_path / "store").exists()


def test_the_tiny_twins_share_table2_tinys_cells():
    from cft_lab.report.tables import expand

    t2 = {plan_cell(c).key for c in expand("table2_tiny")}
    for table in ("table3_tiny", "rl_comparison_tiny"):
        keys = {plan_cell(c).key for c in expand(table)}
        assert keys <= t2, f"{table} plans cells table2_tiny does not have"
