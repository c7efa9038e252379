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


def test_the_dry_run_prints_what_a_paid_teacher_would_buy(outputs, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-estimate-0123")
    rows = [
        {"instruction": "x", "input": f"Question:\nWhat is {i}*3?\n\nSolution:\n{3 * i}", "output": "ok"}
        for i in range(5)
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["cft_lab", "model=qwen2_5_math_7b", "model.revision=" + "0" * 40, "model.attn_implementation=sdpa",
            "data=local", f"data.source.path={tmp_path / 'd.jsonl'}", "teacher=gpt4o_mini", "logger=none",
            "dry_run=true"]  # fmt: skip
    out = run_cli(args, outputs).stdout
    assert "buys   teacher requests: 5 to buy (5 in all, 0 in the request cache)" in out
    assert "tokenizer-free estimate" in out and "estimated cost ~$0.00" in out and "budget $20.00" in out
    batch = run_cli([*args, "teacher.mode=batch"], outputs).stdout
    assert "batch prices" in batch and "Batch API" in batch
    assert not (outputs / "store" / "data").exists()  # a dry run buys nothing
