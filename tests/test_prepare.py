"""``python -m cft_lab prepare TABLE`` (``make prepare``): a table's data artefacts built and its models fetched on a
CPU machine, before any GPU job, with the same keys the cells' own stages use (issue 13, item 3)."""

from __future__ import annotations

from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import DONE, Store
from cft_lab.report.tables import expand
from conftest import run_cli

TINY = ["logger=none", "data.testbed.n_train=48"]


def test_prepare_builds_every_data_artefact_of_a_table_and_nothing_else(outputs):
    proc = run_cli(["cft_lab", "prepare", "demo", *TINY], outputs)
    assert "prepare demo: 5/5 cells ready for their GPU jobs" in proc.stdout
    keys = {plan_cell(c).key_of("data") for c in expand("demo", TINY) if c.objective.name != "base"}
    assert len(keys) == 3  # sft; sft_verified and cft share the critiques; sft_teacher the teacher's answers
    store = Store(outputs)
    assert {p.name for p in (store.root / "data").iterdir()} == keys
    assert all((store.path("data", k) / DONE).is_file() for k in keys)
    assert not any((store.root / stage).exists() for stage in ("train", "select", "infer", "grade", "cells"))
    stamps = {k: (store.path("data", k) / DONE).stat().st_mtime_ns for k in keys}
    again = run_cli(["cft_lab", "prepare", "demo", *TINY], outputs)
    assert again.stdout.count(": found in the store") == 4  # 4 trained cells, 3 artefacts
    assert {k: (store.path("data", k) / DONE).stat().st_mtime_ns for k in keys} == stamps


def test_prepare_says_which_hub_model_it_cannot_fetch_and_exits_1(outputs):
    """Offline here (HF_HUB_OFFLINE=1): the pinned 7B cannot be fetched; prepare names it and the cell is not ready."""
    args = ["cft_lab", "prepare", "demo", *TINY, "method=base", "model=qwen2_5_math_7b", "model.revision=" + "3" * 40]
    proc = run_cli(args, outputs, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert (
        "model.path=Qwen/Qwen2.5-Math-7B@3333" in proc.stdout and "cannot fetch it into the local cache" in proc.stdout
    )
    assert "prepare demo: 0/1 cells ready" in proc.stdout


def test_prepare_leaves_gpu_built_data_to_the_gpu_job(outputs):
    proc = run_cli(["cft_lab", "prepare", "table6_tiny", *TINY, "method=cft_self_generated"], outputs)
    assert "left to the cell's GPU job: its responses are written by the base model" in proc.stdout
    assert not (outputs / "store" / "data").exists() or not any((outputs / "store" / "data").iterdir())
    assert "prepare table6_tiny: 1/1 cells ready" in proc.stdout  # nothing refused: its job builds the data
