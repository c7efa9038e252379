"""Training: the loss does not depend on how a global batch is split into micro-batches (SFT and CFT arms carry
very different numbers of loss tokens per sequence, docs/pitfalls.md#training), and an interrupted run resumes from its
checkpoint."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from cft_lab.data.stage import run_data
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import DONE, Store
from cft_lab.report.tracking import NoOpLogger
from cft_lab.train.stage import run_train
from conftest import SMOKE, compose


def _train(outputs, extra: list[str]):
    cfg = compose(SMOKE + [f"paths.outputs={outputs}", "objective=cft"] + extra)
    store, plan = Store(outputs), plan_cell(cfg)
    data = run_data(cfg, store, plan.key_of("data"))
    return cfg, store, plan, run_train(cfg, store, plan.key_of("train"), data.path, NoOpLogger()).path


def _base_weights():
    from pathlib import Path

    from cft_lab.testbed.bases import MODELS_DIR

    return Path(MODELS_DIR) / "tiny_math" / "model.safetensors"


def test_update_is_independent_of_the_micro_batch_split(outputs):
    common = ["data.testbed.n_train=8", "train.max_steps=1", "train.learning_rate=1e-3", "train.warmup_ratio=0"]
    _, _, _, whole = _train(
        outputs, common + ["train.per_device_train_batch_size=8", "train.gradient_accumulation_steps=1"]
    )
    _, _, _, split = _train(
        outputs, common + ["train.per_device_train_batch_size=2", "train.gradient_accumulation_steps=4"]
    )
    losses = [json.loads((d / "metrics.json").read_text())["log_history"][0]["loss"] for d in (whole, split)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4), losses  # token-weighted mean over the global batch
    a = load_file(str(whole / "checkpoint-1" / "model.safetensors"))
    b = load_file(str(split / "checkpoint-1" / "model.safetensors"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    # Adam's first step moves every weight by about lr (1e-3); a differently weighted gradient flips the sign of
    # many of those moves (differences near 2e-3), float noise stays far below a tenth of one
    assert worst < 1e-4, f"8x1 and 2x4 updates differ by {worst}"
    assert max((a[k] - load_file(str(_base_weights()))[k]).abs().max().item() for k in a) > 1e-4  # it did move


_KILL_SCRIPT = """
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


def test_killed_training_resumes_from_its_last_checkpoint(tmp_path):
    """SIGKILL a real training process once its first checkpoint is complete; the rerun resumes from it and ends
    exactly where an uninterrupted run ends."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    extra = ["train.max_steps=12", "data.testbed.n_train=96", "train.num_checkpoints=4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed_out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(killed_out), *extra], cwd=REPO, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and not list(killed_out.glob("store/train/*/checkpoint-3/trainer_state.json")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (train_dir,) = (killed_out / "store" / "train").iterdir()
    assert not (train_dir / DONE).exists(), "the run finished before it could be killed"

    cfg, _, _, resumed_dir = _train(killed_out, extra)
    metrics = json.loads((resumed_dir / "metrics.json").read_text())
    assert metrics["resumed"] and metrics["global_step"] == 12 and metrics["checkpoint_steps"] == [3, 6, 9, 12]
    _, _, _, clean_dir = _train(tmp_path / "clean", extra)
    a = load_file(str(resumed_dir / "checkpoint-12" / "model.safetensors"))
    b = load_file(str(clean_dir / "checkpoint-12" / "model.safetensors"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-5, f"resumed run ends {worst} away from the uninterrupted one"
    # every checkpoint keeps its weights for selection; once training is done no optimizer state is kept (nothing
    # resumes from a finished artefact; tests/test_checkpoint_saves.py checks which saves hold it while training runs)
    from cft_lab.train.trainer import checkpoints

    assert [(c / "optimizer.pt").is_file() for c in checkpoints(clean_dir)] == [False] * 4


def test_lora_trains_adapters_and_every_backend_reads_their_merge(outputs):
    """``train/lora=default``: the checkpoints hold adapters only; evaluation loads their merge into the base, which
    computes what base + adapters compute, and the recipe is part of the train key."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    from cft_lab.train.adapters import evaluable, is_adapter

    lora = ["train/lora=default", "train.lora.r=4", "train.max_steps=2", "train.learning_rate=1e-2"]
    cfg, _, plan, out = _train(outputs, lora)
    assert cfg.train.lora.r == 4 and cfg.train.lora.alpha == 16
    assert plan.key_of("train") != plan_cell(compose(SMOKE + ["objective=cft", "train.max_steps=2",
                                                             "train.learning_rate=1e-2"])).key_of("train")  # fmt: skip
    ckpt = out / "checkpoint-2"
    assert is_adapter(ckpt) and not (ckpt / "model.safetensors").exists()
    merged = evaluable(str(ckpt))
    assert merged == str(ckpt / "merged") and evaluable(merged) == merged and evaluable(str(ckpt)) == merged
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        want = AutoPeftModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32)(ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(str(_base_weights().parent), dtype=torch.float32)(ids).logits
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
    assert (got - base).abs().max() > 1e-3  # the adapters moved the model
