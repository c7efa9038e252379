"""Figure 2 (validation accuracy against training step, from the stored checkpoint selection) and Table 1 (the paper's
dataset comparison beside the sizes of the datasets our runs built), rendered from tiny stores built here."""

from __future__ import annotations

import json

import pandas as pd

from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import Store
from cft_lab.report import tables
from conftest import SMOKE, run_cli


def _keys(table: str, overrides: list[str] = ()) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for cfg in tables.expand(table, list(overrides)):
        for s in plan_cell(cfg).stages:
            out.setdefault(s.stage, set()).add(s.key)
    return out


def test_figure2_cells_are_table2s_cells():
    for figure, table in (("figure2_tiny", "table2_tiny"), ("figure2", "table2")):
        fig, tab = _keys(figure), _keys(table)
        assert len(fig["select"]) == len(tables.expand(figure)) > 0  # one selection per arm
        for stage in ("data", "train", "select", "grade"):
            assert fig[stage] <= tab[stage], (figure, stage)


def test_figure2_from_a_tiny_store_one_row_per_checkpoint_and_missing_arms_named(outputs):
    over = ["model=tiny_small", *SMOKE]
    # the sweep's end renders the figure (the Hydra callback); one trained arm only
    run_cli(["cft_lab", "table=figure2_tiny", "method=cft", *over], outputs)
    swept = (outputs / "tables" / "figure2_tiny.md").read_text()
    assert "1/1 arms stored" in swept and not (outputs / "dashboards" / "figure2_tiny").exists()

    configs = tables.expand("figure2_tiny", over)
    by_method = {c.objective.name: c for c in configs}
    assert sorted(by_method) == ["cft", "sft_teacher", "sft_verified"]
    store = Store(outputs)
    teacher_key = plan_cell(by_method["sft_teacher"]).key
    store.write_cell_result(teacher_key, {"status": "failed", "error": "RuntimeError: out of memory\ntraceback"})

    result = tables.render("figure2_tiny", over, quiet=True)
    paths = result["paths"]
    assert all(paths[x].stat().st_size > 0 for x in ("md", "csv", "tex", "png"))
    csv = pd.read_csv(paths["csv"])
    plan = plan_cell(by_method["cft"])
    sel = json.loads((store.path("select", plan.key_of("select")) / "selection.json").read_text())
    stored = csv[csv["status"] == "ok"]
    assert len(sel["checkpoints"]) >= 2
    assert list(stored["step"]) == [c["step"] for c in sel["checkpoints"]]
    assert list(stored["accuracy"]) == [c["accuracy"] for c in sel["checkpoints"]]
    assert list(stored.loc[stored["selected"], "step"]) == [sel["selected"]["step"]]
    assert list(stored.loc[stored["last"], "step"]) == [sel["last"]["step"]]
    assert set(stored["key"]) == {plan.key} and set(stored["benchmark"]) == {"testbed_val"}

    missing = csv[csv["status"] != "ok"].set_index("method")
    assert missing.loc["sft_verified", "note"] == "not run" and pd.isna(missing.loc["sft_verified", "step"])
    assert missing.loc["sft_teacher", "status"] == "failed"
    assert missing.loc["sft_teacher", "note"] == "failed: RuntimeError: out of memory"
    md = paths["md"].read_text()
    assert "1/3 arms stored" in md
    assert f"WebInstruct-verified-SFT (SFT-V) (cell {plan_cell(by_method['sft_verified']).key}): not run" in md
    assert f"WebInstruct-GPT4o-SFT (SFT-G) (cell {teacher_key}): failed: RuntimeError: out of memory" in md
    best = max(sel["checkpoints"], key=lambda c: (c["accuracy"], -c["step"]))
    assert f"| {best['accuracy']:.1f} @ {best['step']} |" in md
    assert "≈80" in md and "approximate" in md  # the paper's plateaus, shown as approximate references
    assert {c.status for c in result["cells"]} == {"ok", "failed", "missing"}  # a sweep's end reports the holes


def test_figure2_from_an_empty_store_writes_its_files_and_says_so(outputs):
    result = tables.render("figure2", [], quiet=True)
    md = result["paths"]["md"].read_text()
    assert "0/3 arms stored" in md and "holds none of these arms' selections" in md
    assert md.count(": not run") == 3
    assert result["paths"]["png"].stat().st_size > 0
    csv = pd.read_csv(result["paths"]["csv"])
    assert len(csv) == 3 and set(csv["status"]) == {"missing"} and csv["step"].isna().all()


def test_table1_paper_rows_and_the_sizes_of_a_built_dataset(outputs):
    over = list(SMOKE)  # data.testbed.n_train=48
    run_cli(["cft_lab", "table=table1_tiny", "data=testbed_numina", "method=cft", *over], outputs)
    assert "1/1 data artefacts built" in (outputs / "tables" / "table1_tiny.md").read_text()
    assert not list((outputs / "store" / "cells").glob("*/result.json"))  # stopped after the data stage
    result = tables.render("table1_tiny", over, quiet=True)
    csv = pd.read_csv(result["paths"]["csv"])

    paper = csv[csv["section"] == "paper"].set_index("dataset")
    assert len(paper) == 10 and paper.loc["CFT", "size"] == "50K" and paper.loc["MetaMathQA", "size"] == "395K"
    assert paper.loc["CFT-tiny", "versions"] == "v1 v3" and paper.loc["CFT", "versions"] == "v1 v3 v4"

    ours = csv[csv["section"] == "ours"]
    assert len(ours) == 8  # 4 data options x the SFT and CFT arms' data
    built = ours[ours["status"] == "built"]
    assert list(built["option"]) == ["testbed_numina"] and list(built["arm"]) == ["CFT"]
    cfg = next(
        c for c in tables.expand("table1_tiny", over) if c.data.name == "testbed_numina" and c.run.method == "cft"
    )
    key = plan_cell(cfg).key_of("data")
    card = json.loads((Store(outputs).path("data", key) / "card.json").read_text())
    row = built.iloc[0]
    assert row["key"] == key and row["records"] == card["records"] == 48
    assert row["critiques"] == card["verdicts"]["critiques"] and row["pairs"] == card["arms"]["cft"]["usable"]
    assert row["paper_row"] == "NuminaMath" and row["paper_size"] == "860K"
    assert set(ours[ours["status"] != "built"]["status"]) == {"not built"}

    md = result["paths"]["md"].read_text()
    assert "1/8 data artefacts built" in md and "v4 drops the CFT-tiny row" in md
    numina = next(line for line in md.splitlines() if line.startswith("| Testbed-competition"))
    assert "| 48 |" in numina and "| not built |" in numina  # its CFT data built, its SFT data not
    assert md.count(": not built") == 7  # each artefact the store lacks, named with its key
    assert result["paths"]["tex"].read_text().count(r"\toprule") == 2
