"""Checkpoints bounded (issue 13, item 2): weights at the selection interval, the full resumable state at a coarser
one and when a stop signal arrives, none once training is done, and only the selected and the last checkpoints after
selection. Real training processes, real signals, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

from cft_lab.pipeline.cell import run_cell
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import DONE, Store
from cft_lab.train.trainer import checkpoints
from conftest import REPO, SMOKE, compose

# a training process of the cell's train stage alone (data built first), as `python -c`; argv: outputs, overrides
_TRAIN = """
import sys
sys.path.insert(0, "tests")
from conftest import SMOKE, compose
from cft_lab.report.tracking import NoOpLogger
from cft_lab.pipeline.plan import plan_cell
from cft_lab.data.stage import run_data
from cft_lab.train.stage import run_train
from cft_lab.pipeline.store import Store
cfg = compose(SMOKE + ["paths.outputs=" + sys.argv[1], "objective=cft"] + sys.argv[2:])
store, plan = Store(sys.argv[1]), plan_cell(cfg)
run_train(cfg, store, plan.key_of("train"), run_data(cfg, store, plan.key_of("data")).path, NoOpLogger())
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# 12 steps, a save every 2 (the selection interval), the full state every 6
EXTRA = ["train.max_steps=12", "data.testbed.n_train=96", "train.save_steps=2", "train.full_state_steps=6"]


def _start(out: Path, extra: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _TRAIN, str(out), *extra], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not list(root.glob(pattern)):
        assert proc.poll() is None, proc.stdout.read()[-3000:] if proc.stdout else ""
        time.sleep(0.02)
    assert list(root.glob(pattern)), f"no {pattern} within {timeout}s"


def _full(train_dir: Path) -> list[int]:
    return [int(c.name.split("-")[1]) for c in checkpoints(train_dir) if (c / "optimizer.pt").is_file()]


def _steps(train_dir: Path) -> list[int]:
    return [int(c.name.split("-")[1]) for c in checkpoints(train_dir)]


def _finish(out: Path, extra: list[str]) -> Path:
    proc = _start(out, extra)
    log = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, log[-3000:]
    (train_dir,) = (out / "store" / "train").iterdir()
    return train_dir


def _weights(train_dir: Path, step: int) -> dict:
    return load_file(str(train_dir / f"checkpoint-{step}" / "model.safetensors"))


def test_weights_at_the_selection_interval_full_state_coarser_and_a_killed_run_resumes(tmp_path):
    """SIGKILL once checkpoint-8 is written: 2, 4, 8 hold weights only, 6 the full state; the rerun resumes from 6 and
    ends where an uninterrupted run ends, with no optimizer state left anywhere."""
    out = tmp_path / "killed"
    proc = _start(out, EXTRA)
    _wait_for("store/train/*/checkpoint-8/trainer_state.json", out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (train_dir,) = (out / "store" / "train").iterdir()
    assert not (train_dir / DONE).exists(), "the run finished before it could be killed"
    assert _steps(train_dir)[:4] == [2, 4, 6, 8] and _full(train_dir) == [6]
    eight = train_dir / "checkpoint-8"
    assert not (eight / "optimizer.pt").exists() and (eight / "model.safetensors").is_file()

    resumed = _finish(out, EXTRA)
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-6") and metrics["global_step"] == 12
    assert metrics["checkpoint_steps"] == [2, 4, 6, 8, 10, 12] and _full(resumed) == []  # done: weights only
    clean = _finish(tmp_path / "clean", EXTRA)
    a, b = _weights(resumed, 12), _weights(clean, 12)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_a_stop_signal_saves_the_full_state_at_once_and_a_rerun_resumes_there(tmp_path):
    """SIGTERM (what SLURM sends at pre-emption) between full-state saves (full state only every 100 steps here): the
    step in progress ends with a full save, the stage fails naming the signal and the checkpoint, and the rerun
    resumes from it. (SIGUSR1 through torchrun: the next test.)"""
    sig = signal.SIGTERM
    extra = [*EXTRA[:-1], "train.full_state_steps=100"]
    out = tmp_path / "stopped"
    proc = _start(out, extra)
    _wait_for("store/train/*/checkpoint-4/trainer_state.json", out, proc)
    proc.send_signal(sig)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0
    (train_dir,) = (out / "store" / "train").iterdir()
    stopped = json.loads((train_dir / "stopped.json").read_text())
    assert stopped["signal"] == signal.Signals(sig).name and 4 <= stopped["step"] < 12
    assert f"TrainingInterrupted: training stopped on {stopped['signal']} at step {stopped['step']}" in log
    assert _full(train_dir) == [stopped["step"]]  # only the stop's save holds the full state
    assert not (train_dir / DONE).exists()
    resumed = _finish(out, extra)
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith(f"checkpoint-{stopped['step']}") and metrics["global_step"] == 12
    assert not (resumed / "stopped.json").exists()


def test_selection_keeps_the_selected_and_the_last_checkpoint_and_refuses_a_second_rule(outputs):
    over = [*SMOKE, f"paths.outputs={outputs}", "objective=sft", "train.num_checkpoints=3", "train.max_steps=6"]
    cfg = compose(over)
    result = run_cell(cfg)
    assert result["status"] == "ok", result.get("traceback")
    store, plan = Store(outputs), plan_cell(cfg)
    train_dir = store.path("train", plan.key_of("train"))
    selection = result["selection"]
    kept = sorted({selection["selected"]["step"], selection["last"]["step"]})
    assert _steps(train_dir) == kept and kept[-1] == 6
    pruned = json.loads((train_dir / "pruned.json").read_text())
    assert pruned["kept"] == kept and sorted(pruned["deleted"] + kept) == [2, 4, 6]
    assert pruned["by_select"] == plan.key_of("select")
    assert store.absolute(selection["selected"]["path"]).is_dir()  # what the infer stage evaluates is there
    # another selection rule needs every checkpoint: refused with the fix, nothing selected from a partial set
    other = compose([*over, "eval.select.limit=3"])
    failed = run_cell(other)
    assert failed["status"] == "failed" and "kept only checkpoints" in failed["error"]
    assert "train.keep_checkpoints=all" in failed["error"]


def test_keep_checkpoints_all_keeps_every_checkpoint(outputs):
    cfg = compose([*SMOKE, f"paths.outputs={outputs}", "objective=sft", "train.keep_checkpoints=all"])
    assert run_cell(cfg)["status"] == "ok"
    train_dir = Store(outputs).path("train", plan_cell(cfg).key_of("train"))
    assert _steps(train_dir) == [3, 6] and not (train_dir / "pruned.json").exists()


def test_keep_and_full_state_settings_leave_every_key_unchanged():
    base = plan_cell(compose(SMOKE))
    for extra in (["train.keep_checkpoints=all"], ["train.full_state_steps=4"], ["train.stop_grace_s=5"]):
        assert [s.key for s in plan_cell(compose(SMOKE + extra)).stages] == [s.key for s in base.stages], extra


def test_a_stop_signal_reaches_torchrun_ranks_which_save_and_stop(tmp_path):
    """2 gloo ranks under torchrun: SIGUSR1 to the launching process is forwarded to the ranks (torchrun itself
    ignores it), they agree on the step, save its full state and exit; the stage fails naming the checkpoint and
    a rerun resumes from it."""
    extra = [*EXTRA[:-1], "train.full_state_steps=100", "train.launcher=torchrun", "train.num_devices=2",
             "train.per_device_train_batch_size=8"]  # fmt: skip
    out = tmp_path / "torchrun"
    proc = _start(out, extra)
    _wait_for("store/train/*/checkpoint-2/trainer_state.json", out, proc, timeout=300)
    proc.send_signal(signal.SIGUSR1)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0, log[-3000:]
    (train_dir,) = (out / "store" / "train").iterdir()
    stopped = json.loads((train_dir / "stopped.json").read_text())
    assert 2 <= stopped["step"] < 12 and _full(train_dir) == [stopped["step"]]
    assert f"saved its full state in checkpoint-{stopped['step']}" in log and "TrainingInterrupted" in log
    assert not any(p.is_dir() for p in (train_dir / f"checkpoint-{stopped['step']}").glob("global_step*"))
    resumed = _finish(out, extra)
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith(f"checkpoint-{stopped['step']}") and metrics["global_step"] == 12
