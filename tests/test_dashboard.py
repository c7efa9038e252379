"""The dashboard of a table (cft_lab.report.dashboard), checked against what the runs really logged.

One tiny store is built once for the module, through the real CLI with the W&B logger (offline): Table 2 with two
of its rows (Base, CFT) and Table 7 with two of its columns (SFT-verified, CFT: the CFT cell is Table 2's, shared
through the store), on the SMOKE settings. Every W&B fact below is read back from the offline run files
(tests/wandb_file.py), never from what the code meant to log. Nothing here goes online: no ``wandb sync``, no report
saved (that needs a W&B server; see the README's "Publishing a table's view").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import Store, read_jsonl
from conftest import REPO, SMOKE, run_cli
from wandb_file import logged_keys, logged_table

SECRET = "sk-THIS-IS-A-TEST-SECRET-fedcba9876543210"
WANDB_KEY = "fedcba9876543210fedcba9876543210fedcba98"
TINY = [o for o in SMOKE if o != "logger=none"] + ["logger=wandb", "model=tiny_math"]
TABLES = {"table2_tiny": ["method=base,cft"], "table7_tiny": ["method=sft_verified,cft"]}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Both sweeps (their callbacks write each table's view), then the dashboard command for Table 7; secrets in the
    environment all along."""
    outputs = tmp_path_factory.mktemp("dashboard") / "outputs"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CFT_LAB_OUTPUTS", str(outputs))
        mp.setenv("OPENAI_API_KEY", SECRET)
        mp.setenv("WANDB_API_KEY", WANDB_KEY)
        for table, cells in TABLES.items():
            run_cli(["cft_lab", f"table={table}", *cells, *TINY], outputs)
        run_cli(["cft_lab", "dashboard", "table7_tiny", *TABLES["table7_tiny"], *TINY], outputs)
    return outputs


def _spec(outputs: Path, table: str) -> dict:
    return json.loads((outputs / "dashboards" / f"{table}.json").read_text(encoding="utf-8"))


def _run_dirs(outputs: Path, run_id: str) -> list[Path]:
    return sorted((outputs / "wandb" / "wandb").glob(f"offline-run-*-{run_id}"))


def _cells(outputs: Path, table: str) -> dict[str, dict]:
    """{cell key: result.json} of the table's planned cells, from the store."""
    from cft_lab.report.tables import expand

    keys = [plan_cell(c).key for c in expand(table, [*TABLES[table], *TINY, f"paths.outputs={outputs}"])]
    return {k: Store(outputs).cell_result(k) for k in keys}


@pytest.mark.parametrize("table", list(TABLES))
def test_view_references_only_keys_and_tables_the_runs_logged(store, table):
    import wandb_workspaces.reports.v2 as wr

    from cft_lab.report import view

    spec = _spec(store, table)
    cells = _cells(store, table)
    assert len(cells) == 2 and all(r["status"] == "ok" for r in cells.values())
    cell_runs = spec["runsets"]["cells"]["runs"]
    assert {r["cell_key"] for r in cell_runs.values()} == set(cells)
    (table_run,) = spec["runsets"]["table"]["runs"]

    logged = {}
    for run_id in [*cell_runs, table_run]:
        dirs = _run_dirs(store, run_id)
        if run_id in cell_runs:  # one run per cell, also for the CFT cell both tables share
            assert len(dirs) == 1, (run_id, dirs)
        else:  # Table 7's sweep callback and then the dashboard command logged the same table run: one id
            assert len(dirs) >= (2 if table == "table7_tiny" else 1), (run_id, dirs)
        (run_file,) = dirs[-1].glob(f"run-{run_id}.wandb")
        config, keys = logged_keys(run_file)
        logged[run_id] = keys | {f"config:{k}" for k in config}

    refs = view.spec_references(spec)
    assert set(refs) == {*cell_runs, table_run}
    for run_id, keys in refs.items():
        assert keys <= logged[run_id], f"{run_id} never logged {sorted(keys - logged[run_id])}"
    kinds = [p["kind"] for p in spec["panels"]]
    assert kinds.count("bar") == 5 and {"line", "runs_table", "table", "image"} <= set(kinds)
    (line,) = [p for p in spec["panels"] if p["kind"] == "line"]
    trained = [i for i, r in cell_runs.items() if r["trained"]]
    assert line["runs"] == trained and len(trained) == (1 if table == "table2_tiny" else 2)
    assert {"select/selected", "select/testbed_val"} <= set(line["y"])

    # the report W&B's API would save, walked back from its objects: it reads the same keys, from the same runs
    report = view.build_report(spec, entity="someone", project=spec["wandb"]["project"])
    by_filter = {spec["runsets"][name]["filter"]: name for name in ("cells", "table")}
    for block in report.blocks:
        if not isinstance(block, wr.PanelGrid):
            continue
        (runset,) = block.runsets
        runs = list(spec["runsets"][by_filter[runset.filters]]["runs"])
        reads: list[tuple[set[str], list[str]]] = []  # (keys, the runs that must hold them)
        for p in block.panels:
            if isinstance(p, wr.BarPlot):
                reads.append((set(p.metrics), runs))
            elif isinstance(p, wr.LinePlot):  # the selection curves: only trained arms have one
                reads.append(({p.x, *p.y}, trained))
            elif isinstance(p, wr.WeavePanelSummaryTable):
                reads.append(({p.table_name}, runs))
            elif isinstance(p, wr.MediaBrowser):
                reads.append((set(p.media_keys), runs))
            else:
                raise AssertionError(f"unexpected panel {type(p).__name__}")
        for col in runset.pinned_columns:  # the runs table
            section, _, name = col.partition(":")
            if section == "summary":
                reads.append(({name}, runs))
            elif section == "config":
                reads.append(({f"config:{name.removesuffix('.value')}"}, runs))
            else:
                assert col == "run:displayName", col
        assert reads
        for keys, must in reads:
            for run_id in must:
                assert keys <= logged[run_id], f"{run_id}: {sorted(keys - logged[run_id])}"
    assert spec["wandb_report"]["displayName"] == spec["title"] and spec["wandb_report"]["spec"]["blocks"]


def test_per_item_tables_hold_one_row_per_graded_item(store):
    for table in TABLES:
        spec = _spec(store, table)
        for cell_key, result in _cells(store, table).items():
            grade_dir = Store(store).path("grade", result["stages"]["grade"])
            graded = [(b, r["id"]) for b in result["scores"] for r in read_jsonl(grade_dir / f"{b}.jsonl")]
            parquet = pd.read_parquet(spec["files"]["items"][cell_key])
            assert list(zip(parquet["benchmark"], parquet["id"])) == graded and len(graded) == 4 * 6
            assert parquet["correct"].tolist() == [
                r["correct"] for b in result["scores"] for r in read_jsonl(grade_dir / f"{b}.jsonl")
            ]
            # the W&B Table the cell logged with its run holds the same rows and columns
            logged = logged_table(_run_dirs(store, f"cell-{cell_key}")[-1], "items")
            assert logged["columns"] == list(parquet.columns)
            assert logged["data"] == parquet.astype(object).where(parquet.notna(), None).values.tolist()


def test_paired_counts_equal_those_of_the_mcnemar_comparison(store):
    from cft_lab.eval.compare import paired

    for table in TABLES:
        spec = _spec(store, table)
        counts = pd.read_parquet(spec["files"]["paired_counts"])
        items = pd.read_parquet(spec["files"]["paired"])
        assert len(spec["pairs"]) == 1 and not counts.empty
        for pair in spec["pairs"]:
            ref = paired(Store(store), pair["a_key"], pair["b_key"], n_boot=100)
            mine = counts[counts["pair"] == pair["pair"]].set_index("benchmark")
            assert sorted(mine.index) == sorted(ref)
            for bench, r in ref.items():
                row = mine.loc[bench]
                assert (row["n"], row["only_b"], row["only_a"]) == (r["n"], r["b01"], r["b10"]), bench
                assert row["both_right"] + row["only_a"] == round(r["accuracy_a"] * r["n"] / 100)
                aligned = items[(items["pair"] == pair["pair"]) & (items["benchmark"] == bench)]
                assert len(aligned) == r["n"] and aligned["id"].is_unique
        # the table run logged the same counts
        (table_run,) = spec["runsets"]["table"]["runs"]
        logged = logged_table(_run_dirs(store, table_run)[-1], "paired_counts")
        assert [r[logged["columns"].index("only_b")] for r in logged["data"]] == counts["only_b"].tolist()


def test_paired_view_aligns_by_id_and_counts_like_paired_test():
    """Arms graded in different orders, with items only one of them has: the outcomes are McNemar's cells."""
    from cft_lab.eval.metrics import paired_test
    from cft_lab.report.items import paired_counts, paired_frame

    def arm(flags: dict[str, bool]) -> pd.DataFrame:
        rows = [
            {"benchmark": "b", "label": "B", "id": i, "mode": "paper", "correct": c, "answer_paper": str(int(c))}
            for i, c in flags.items()
        ]
        return pd.DataFrame(rows)

    a = {"1": True, "2": True, "3": False, "4": False, "5": True, "6": False, "only-a": True}
    b = {"only-b": False, "6": True, "5": True, "4": True, "3": True, "2": False, "1": True}
    frame = paired_frame(arm(a), arm(b))
    assert frame["id"].tolist() == ["1", "2", "3", "4", "5", "6"]  # A's order, common ids only
    (c,) = paired_counts(frame)
    common = [k for k in a if k in b]
    ref = paired_test([a[k] for k in common], [b[k] for k in common])
    assert (c["n"], c["only_b"], c["only_a"], c["p_value"]) == (ref["n"], ref["b01"], ref["b10"], ref["p_value"])
    assert (c["both_right"], c["both_wrong"]) == (2, 0) and c["diff"] == ref["diff"]
    with pytest.raises(ValueError, match="mode paper, arm B in strict"):
        paired_frame(arm(a), arm(b).assign(mode="strict"))


def test_each_layout_pairs_its_arms_and_skips_holes():
    from cft_lab.report.frames import (
        BASE_COLUMN,
        DELTA_LABEL,
        METHOD_LABELS,
        REFERENCE_COLUMN,
        SELF_COLUMN,
        SFT_VERIFIED_COLUMN,
    )
    from cft_lab.report.items import PAIR_RULES, arm_pairs
    from cft_lab.report.table8 import row_label

    def runs(labels, missing=()):
        return {lab: {"status": "missing" if lab in missing else "ok", "key": f"k{i}"} for i, lab in enumerate(labels)}

    m, cft, sft = "tiny", METHOD_LABELS["cft"], METHOD_LABELS["sft"]
    t2 = runs([(m, METHOD_LABELS["base"]), (m, sft), (m, cft), (m, DELTA_LABEL)], missing=[(m, sft)])
    t2[(m, DELTA_LABEL)].update(status="derived", key=None)
    assert arm_pairs("table2", t2) == [((m, METHOD_LABELS["base"]), (m, cft))]
    assert arm_pairs("table6", runs([BASE_COLUMN, SELF_COLUMN, REFERENCE_COLUMN])) == [
        (BASE_COLUMN, SELF_COLUMN),
        (BASE_COLUMN, REFERENCE_COLUMN),
        (SELF_COLUMN, REFERENCE_COLUMN),
    ]
    assert arm_pairs("table7", runs([SFT_VERIFIED_COLUMN, "weak", "strong"])) == [
        (SFT_VERIFIED_COLUMN, "weak"),
        (SFT_VERIFIED_COLUMN, "strong"),
    ]
    d1, d3 = (m, row_label("direct", 0.1)), (m, row_label("direct", 0.3))
    two1, one3 = (m, row_label("two_stage", 0.1)), (m, row_label("single_pass", 0.3))
    assert arm_pairs("table8", runs([d1, d3, two1, one3, (m, row_label("two_stage", 0.6))])) == [(d1, two1), (d3, one3)]
    assert set(PAIR_RULES) == {"table2", "table6", "table7", "table8"}
    with pytest.raises(ValueError, match="no pair rule for layout 'table9'"):
        arm_pairs("table9", {})


def test_make_dashboard_offline_writes_the_spec_the_parquet_files_and_the_picture(store):
    out = store / "dashboards"
    for path in [out / "table2_tiny.json", out / "table2_tiny.png", out / "table2_tiny" / "paired.parquet"]:
        path.unlink()
    args = " ".join([*TABLES["table2_tiny"], *TINY])
    env = {
        **os.environ,
        "CFT_LAB_OUTPUTS": str(store),
        "OMP_NUM_THREADS": "1",
        "OPENAI_API_KEY": SECRET,
        "WANDB_API_KEY": WANDB_KEY,
    }
    done = subprocess.run(
        [
            "make",
            "-s",
            "-o",
            ".venv/.installed",
            "dashboard",
            "TABLE=table2_tiny",
            f"PYTHON={sys.executable}",
            f"ARGS={args}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    spec = _spec(store, "table2_tiny")
    assert (out / "table2_tiny.png").stat().st_size > 10_000
    assert len(spec["files"]["items"]) == 2 and all(Path(p).is_file() for p in spec["files"]["items"].values())
    assert len(pd.read_parquet(out / "table2_tiny" / "paired.parquet")) == 4 * 6
    assert "wandb sync --project cft-lab" in done.stdout and "--publish" in done.stdout
    assert spec["sync"]["missing"] == [] and len(spec["sync"]["runs"]) == 3


def test_unknown_table_and_publishing_without_a_key_fail_in_one_line(store, tmp_path, monkeypatch, capsys):
    from cft_lab.report import dashboard

    assert dashboard.main(["table9_tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown table 'table9_tiny'; known:") and "table2_tiny" in err and "\n" not in err
    assert dashboard.main(["table2_tiny", "model=nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: In 'config': Could not find 'model/nope'") and "tiny_math" in err and "\n" not in err
    # no key anywhere W&B looks, and a base URL on a closed loopback port: nothing can leave the machine
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    for var in ("HOME", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(dashboard.PublishError, match="needs a W&B API key") as e:
        dashboard.publish(_spec(store, "table7_tiny"), tmp_path)
    assert "\n" not in str(e.value)


def test_no_api_key_reaches_a_view_or_run_file(store):
    written = [p for p in store.rglob("*") if p.is_file() and p.stat().st_size < 50_000_000]
    assert any(p.suffix == ".parquet" for p in written) and any(p.name.endswith(".wandb") for p in written)
    leaked = [p for p in written if SECRET.encode() in p.read_bytes() or WANDB_KEY.encode() in p.read_bytes()]
    assert leaked == []
