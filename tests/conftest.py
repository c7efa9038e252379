"""Shared fixtures: offline, CPU-only, every run product under a per-test temporary folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]

# Small enough to train and evaluate a cell in seconds, large enough that every stage does real work.
SMOKE = [
    "logger=none",
    "data.testbed.n_train=48",
    "train.max_steps=6",
    "train.num_checkpoints=2",
    "train.logging_steps=1",
    "eval.limit=6",
    "eval.select.limit=6",
    "inference.max_new_tokens=40",
    "run.num_threads=1",
]

# The paper world (the 7B model is named, never loaded): the real data code runs offline on local files.
PAPER_WORLD_TINY = ["model=qwen2_5_math_7b", "data=webinstruct_cft_50k", "teacher=gpt4o_1120", "logger=none"]


def compose(overrides: list[str]):
    """Compose the project's config exactly as ``python -m cft_lab`` would, and type it."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from cft_lab.config import register, to_config
    from cft_lab.paths import CONF_DIR

    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_config(hcompose("config", overrides=overrides))


def run_cli(args: list[str], outputs: Path, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m cft_lab`` (or another module) for real, in a subprocess, with outputs redirected."""
    env = {**os.environ, "CFT_LAB_OUTPUTS": str(outputs), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


#: What a paper-scale dry run may refuse its cells for on a machine without the GPU packages: package -> the words
#: of its refusal (the plan is printed first; CI installs none of them for the default suite).
GPU_REFUSALS = {"vllm": "`import vllm` failed", "deepspeed": "needs DeepSpeed", "flash_attn": "needs flash-attn"}


def _importable(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def run_paper_dry_run(args: list[str], outputs: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """A paper-scale dry run: it exits 0 where the GPU packages (vLLM, DeepSpeed, flash-attn) import; where some do
    not, cells may be refused for those, and for nothing else, after the plan was printed. Hub models are not pinned
    in the shipped configs: pass model.revision=... or model.allow_unpinned=true."""
    proc = run_cli(args, outputs, timeout=timeout, check=False)
    if proc.returncode == 0:
        return proc
    text = proc.stdout + proc.stderr
    failed = re.search(r"^error: (\d+) cell\(s\) failed", text, re.M)
    missing = [m for m in GPU_REFUSALS if not _importable(m)]
    refusals = [line for line in proc.stdout.splitlines() if line.startswith("  refused: ")]
    assert proc.returncode == 1 and failed and refusals and missing, (
        f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    for line in refusals:
        assert any(GPU_REFUSALS[m] in line for m in missing), f"refused for more than missing {missing}: {line}"
    return proc


@pytest.fixture
def outputs(tmp_path: Path, monkeypatch) -> Path:
    out = tmp_path / "outputs"
    monkeypatch.setenv("CFT_LAB_OUTPUTS", str(out))
    return out
