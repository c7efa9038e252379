"""Training: the loss does not depend on how a global batch is split into micro-batches (SFT and CFT arms carry
very different numbers of loss tokens per sequence, PITFALLS), and an interrupted run resumes from its checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file

from cft_lab.loggers import NoOpLogger
from cft_lab.plan import plan_cell
from cft_lab.stages import run_data, run_train
from cft_lab.store import DONE, Store
from conftest import SMOKE, compose


def _train(outputs, extra: list[str]):
    cfg = compose(SMOKE + [f"paths.outputs={outputs}", "objective=cft"] + extra)
    store, plan = Store(outputs), plan_cell(cfg)
    data_dir = run_data(cfg, store, plan.key_of("data"))
    return cfg, store, plan, run_train(cfg, store, plan.key_of("train"), data_dir, NoOpLogger())


def _base_weights():
    from pathlib import Path

    from cft_lab.testbed.bases import MODELS_DIR

    return Path(MODELS_DIR) / "tiny_math" / "model.safetensors"


def test_update_is_independent_of_the_micro_batch_split(outputs):
    common = ["data.testbed.n_train=8", "train.max_steps=1", "train.learning_rate=1e-3", "train.warmup_ratio=0"]
    _, _, _, whole = _train(outputs, common + ["train.per_device_train_batch_size=8",
                                               "train.gradient_accumulation_steps=1"])
    _, _, _, split = _train(outputs, common + ["train.per_device_train_batch_size=2",
                                               "train.gradient_accumulation_steps=4"])
    losses = [json.loads((d / "metrics.json").read_text())["log_history"][0]["loss"] for d in (whole, split)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4), losses  # token-weighted mean over the global batch
    a = load_file(str(whole / "checkpoint-1" / "model.safetensors"))
    b = load_file(str(split / "checkpoint-1" / "model.safetensors"))
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    # Adam's first step moves every weight by about lr (1e-3); a differently weighted gradient flips the sign of
    # many of those moves (differences near 2e-3), float noise stays far below a tenth of one
    assert worst < 1e-4, f"8x1 and 2x4 updates differ by {worst}"
    assert max((a[k] - load_file(str(_base_weights()))[k]).abs().max().item() for k in a) > 1e-4  # it did move


def test_interrupted_training_resumes_from_its_last_checkpoint(outputs):
    cfg, store, plan, train_dir = _train(outputs, [])
    first = json.loads((train_dir / "metrics.json").read_text())
    assert first["checkpoint_steps"] == [3, 6] and not first["resumed"]
    final = load_file(str(train_dir / "checkpoint-6" / "model.safetensors"))
    # simulate a kill after step 3: the last checkpoint and the completion marker are gone
    shutil.rmtree(train_dir / "checkpoint-6")
    (train_dir / DONE).unlink()
    data_dir = store.path("data", plan.key_of("data"))
    run_train(cfg, store, plan.key_of("train"), data_dir, NoOpLogger())
    again = json.loads((train_dir / "metrics.json").read_text())
    assert again["resumed"] and again["global_step"] == 6
    resumed = load_file(str(train_dir / "checkpoint-6" / "model.safetensors"))
    worst = max((final[k] - resumed[k]).abs().max().item() for k in final)
    assert worst < 1e-5, f"resumed run ends {worst} away from the uninterrupted one"
