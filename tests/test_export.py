"""Data-only runs and export, through the real CLI: ``run.stop_after=data`` builds a dataset and writes no cell result,
``cells --data`` lists it, ``export`` saves it as a Hugging Face dataset in the released WebInstruct-CFT schema with
its card as README, and the saved dataset reloads."""

from __future__ import annotations

import json

from conftest import run_cli

TINY = ["logger=none", "data.testbed.n_train=24", "run.num_threads=1"]


def test_data_only_run_then_cells_and_export_reload(outputs, tmp_path):
    import datasets

    built = run_cli(["cft_lab", "run.stop_after=data", *TINY], outputs)
    assert "stopped after data" in built.stdout + built.stderr
    store = outputs / "store"
    assert not (store / "cells").exists() and not (store / "train").exists()  # no cell result, nothing trained
    (data_dir,) = (store / "data").iterdir()
    assert (data_dir / "DONE.json").is_file()

    listed = run_cli(["cft_lab", "cells", "--data"], outputs).stdout
    assert data_dir.name in listed and " 24 " in listed
    assert "0 cells" in run_cli(["cft_lab", "cells"], outputs).stdout

    out = tmp_path / "export"
    done = run_cli(["cft_lab", "export", data_dir.name, "--out", str(out)], outputs).stdout
    assert f"exported 24 rows of data {data_dir.name}" in done and "left out: none" in done
    ds = datasets.load_from_disk(str(out))
    assert len(ds) == 24 and ds.column_names[:3] == ["instruction", "input", "output"]
    assert {"id", "verdict", "teacher", "teacher_model", "source", "response_correct"} <= set(ds.column_names)
    records = [json.loads(x) for x in (data_dir / "records.jsonl").open()]
    row, rec = ds[0], records[0]
    assert row["instruction"] == "Please critique whether the following solution to the question is correct."
    assert row["input"] == f"Question:\n{rec['question']}\n\nSolution:\n{rec['response']}"
    assert row["output"] == rec["critique"] and row["verdict"] == rec["verdict"] and row["id"] == rec["id"]
    assert (out / "README.md").read_text() == (data_dir / "card.md").read_text()


def test_a_full_run_reuses_the_data_of_a_data_only_run_and_cells_lists_it(outputs):
    run_cli(["cft_lab", "run.stop_after=data", *TINY], outputs)
    (data_dir,) = (outputs / "store" / "data").iterdir()
    stamp = (data_dir / "DONE.json").stat().st_mtime_ns
    smoke = [*TINY, "train.max_steps=2", "train.num_checkpoints=1", "eval.limit=2", "eval.select.limit=2",
             "inference.max_new_tokens=8"]  # fmt: skip
    run_cli(["cft_lab", *smoke], outputs)
    assert list((outputs / "store" / "data").iterdir()) == [data_dir]  # the same artefact, not rebuilt
    assert (data_dir / "DONE.json").stat().st_mtime_ns == stamp
    listed = run_cli(["cft_lab", "cells"], outputs).stdout
    (cell,) = (outputs / "store" / "cells").iterdir()
    assert f"ok      {cell.name}" in listed and "tiny_math/cft" in listed and "2-step" in listed
    shown = json.loads(run_cli(["cft_lab", "cells", "--json", "--status", "ok"], outputs).stdout)
    assert [c["key"] for c in shown] == [cell.name] and shown[0]["stages"]["data"]
