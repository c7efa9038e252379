"""Slow checks (``make test-slow``): the multi-GPU launch path on CPU and a whole tiny table sweep."""

from __future__ import annotations

import json

import pytest

from cft_lab.pipeline.cell import run_cell
from conftest import SMOKE, compose, run_cli

pytestmark = pytest.mark.slow


def test_torchrun_launcher_trains_in_a_subprocess(outputs):
    """`train.launcher=torchrun` writes a resolved request and trains under torchrun (gloo on CPU)."""
    cfg = compose(SMOKE + ["objective=sft", "train.launcher=torchrun", f"paths.outputs={outputs}"])
    result = run_cell(cfg)
    assert result["status"] == "ok", result.get("traceback")
    train_dir = outputs / "store" / "train" / result["stages"]["train"]
    request = json.loads((train_dir / "request.json").read_text())
    assert request["config"]["train"]["launcher"] == "torchrun"
    assert json.loads((train_dir / "metrics.json").read_text())["global_step"] == 6


def test_table7_tiny_sweep_renders_every_cell(outputs):
    args = [
        "cft_lab",
        "table=table7_tiny",
        "logger=none",
        "data.testbed.n_train=400",
        "eval.limit=50",
        "eval.select.limit=50",
    ]
    proc = run_cli(args, outputs, timeout=1200)
    md = (outputs / "tables" / "table7_tiny.md").read_text()
    assert "3/3 cells done" in md and "SFT-verified" in md and "GPT-4o-mini" in md
    again = run_cli(args, outputs, timeout=300)
    assert (again.stdout + again.stderr).count("finished before") == 3, again.stdout[-2000:]
    assert "table7" in proc.stdout


@pytest.mark.parametrize("zero", ["zero3"])
def test_deepspeed_launcher_trains_on_cpu(outputs, zero):
    """`train.launcher=deepspeed` with the paper's ZeRO-3 config, one CPU rank (gloo): the launcher's
    ``--local_rank`` argument is parsed and the run finishes with loadable checkpoints."""
    pytest.importorskip("deepspeed")
    cfg = compose(
        SMOKE
        + [
            "objective=sft",
            "train.launcher=deepspeed",
            f"train.deepspeed=conf/deepspeed/{zero}.json",
            f"paths.outputs={outputs}",
        ]
    )
    result = run_cell(cfg)
    assert result["status"] == "ok", result.get("traceback")
    train_dir = outputs / "store" / "train" / result["stages"]["train"]
    assert json.loads((train_dir / "metrics.json").read_text())["global_step"] == 6


def test_submitit_launcher_runs_cells_in_their_own_processes_and_renders(outputs):
    """The SLURM launcher's local twin (`hydra/launcher=submitit_local`): each cell is its own process, as on a
    cluster, and the table is still rendered once, from the store, when the sweep ends."""
    run_cli(["cft_lab", "table=demo", "method=base,sft", "hydra/launcher=submitit_local", *SMOKE], outputs)
    md = (outputs / "tables" / "demo.md").read_text()
    assert "2/2 cells done" in md
    results = [json.loads(p.read_text()) for p in (outputs / "store" / "cells").glob("*/result.json")]
    assert sorted(r["status"] for r in results) == ["ok", "ok"]
    assert list((outputs / "hydra" / "multirun").glob("*/.submitit"))  # the jobs went through submitit
