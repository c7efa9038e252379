"""The train stage: one code path for every arm (SFT, SFT-verified, SFT-teacher, CFT).

Input: tokenized rows ``{id, input_ids, completion_mask}`` from ``cft_lab.train.tokenize.tokenize_pairs``. TRL's
``SFTTrainer`` builds the labels from ``completion_mask`` (prompt tokens -100), pads, and trains; we check that no
prepared example is fully masked. Output, in the artefact directory::

    checkpoint-<step>/   model weights + tokenizer (+ optimizer state, so an interrupted run resumes)
    metrics.json         train loss, steps, tokens seen, runtime, log history, checkpoint steps

``launcher=inprocess`` trains in this process (CPU, one GPU). ``torchrun`` / ``deepspeed`` write the resolved request
to ``request.json`` and run ``python -m cft_lab.train.trainer request.json`` under that launcher as a subprocess:
Hydra multirun and in-process distributed training do not mix (docs/pitfalls.md#orchestration).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from cft_lab.config import Config, as_dict, to_config
from cft_lab.paths import resolve_repo_path
from cft_lab.report.tracking import Logger, NoOpLogger
from cft_lab.train.compute import accounting
from cft_lab.train.modeling import load_model, load_tokenizer
from cft_lab.train.tokenize import MaskError, check_masks

log = logging.getLogger(__name__)


def save_steps_for(cfg: Config, n_examples: int) -> tuple[int, int]:
    """(total optimizer steps, save spacing) for a run over ``n_examples``."""
    t = cfg.train
    global_batch = t.per_device_train_batch_size * t.gradient_accumulation_steps * t.num_devices
    total = t.max_steps if t.max_steps > 0 else math.ceil(math.ceil(n_examples / global_batch) * t.num_train_epochs)
    spacing = t.save_steps or max(1, math.ceil(total / max(t.num_checkpoints, 1)))
    return total, spacing


def _step(path: Path) -> int:
    return int(path.name.split("-")[1])


def checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints, by step. The Trainer writes ``trainer_state.json`` after the weights and optimizer
    state, so a folder without it is a save that was interrupted and is never selected nor resumed from."""
    found = [
        p
        for p in out_dir.glob("checkpoint-*")
        if p.is_dir() and p.name.split("-")[1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return sorted(found, key=_step)


def _has_optimizer_state(ckpt: Path) -> bool:
    return (ckpt / "optimizer.pt").is_file() or any(ckpt.glob("global_step*"))


def _set_aside_incomplete(out_dir: Path) -> None:
    """Move interrupted saves out of the way so the Trainer's own checkpoint discovery never meets them."""
    complete = set(checkpoints(out_dir))
    for p in out_dir.glob("checkpoint-*"):
        if p.is_dir() and p not in complete:
            target = out_dir / f"incomplete-{p.name}-{int(time.time())}"
            log.warning("setting aside interrupted save %s -> %s", p, target.name)
            p.rename(target)


def _sft_config(cfg: Config, out_dir: Path, n_examples: int):
    import torch
    from trl import SFTConfig

    t = cfg.train
    total, spacing = save_steps_for(cfg, n_examples)
    return SFTConfig(
        output_dir=str(out_dir),
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of the total steps
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        bf16=t.bf16,
        gradient_checkpointing=t.gradient_checkpointing,
        deepspeed=str(resolve_repo_path(t.deepspeed)) if t.deepspeed and t.launcher != "inprocess" else None,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=spacing,
        save_total_limit=None,
        save_only_model=False,
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",
        max_length=t.cutoff_len,
        completion_only_loss=True,
        packing=False,
        dataset_num_proc=None,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
        remove_unused_columns=True,
    )


class _ForwardLogs(TrainerCallback):
    """Forwards the Trainer's logs to our logger (W&B or no-op), from the main process only."""

    def __init__(self, logger: Logger):
        self.logger = logger

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            self.logger.log({f"train/{k}": v for k, v in logs.items()}, step=state.global_step)


class _KeepOptimizerInLatestOnly(TrainerCallback):
    """After each save, drop optimizer/scheduler state (and DeepSpeed's ``global_step*`` shards) from every
    checkpoint but the newest: selection needs every checkpoint's weights, resuming needs only the newest
    optimizer. The paper saved weights every 2 steps without optimizer state (no resume possible); keeping it in
    all ~49 checkpoints of a 7B ZeRO-3 run would take terabytes (docs/pitfalls.md#training)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        for ckpt in checkpoints(self.out_dir)[:-1]:
            for p in list(ckpt.glob("optimizer*")) + list(ckpt.glob("scheduler*")):
                p.unlink(missing_ok=True)
            for p in ckpt.glob("global_step*"):
                shutil.rmtree(p, ignore_errors=True)


def _lora(cfg: Config):
    if cfg.train.lora is None:
        return None
    from peft import LoraConfig

    lo = cfg.train.lora
    return LoraConfig(
        r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules, task_type="CAUSAL_LM"
    )


def train_inprocess(cfg: Config, model_dir: str, rows: list[dict], out_dir: Path, logger: Logger | None = None) -> dict:
    """Train on ``rows`` and leave checkpoints in ``out_dir``; resumes from the last full checkpoint."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTTrainer

    if cfg.run.num_threads:
        import torch

        torch.set_num_threads(cfg.run.num_threads)
    set_seed(cfg.train.seed)
    # the hub revision pins the base model; a chain's parent checkpoint (a local folder) has none
    revision = cfg.model.hub_revision() if model_dir == cfg.model.path else None
    # the training arguments come first: with a ZeRO-3 config they make from_pretrained shard the weights as they
    # load, instead of every rank holding the whole model
    args = _sft_config(cfg, out_dir, len(rows))
    tokenizer = load_tokenizer(model_dir, revision, cfg.model.trust_remote_code)
    model = load_model(model_dir, cfg.model, revision, dtype=training_dtype(cfg))
    dataset = Dataset.from_list([{"input_ids": r["input_ids"], "completion_mask": r["completion_mask"]} for r in rows])
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=_lora(cfg)
    )
    if len(trainer.train_dataset) != len(rows):  # TRL drops fully masked rows silently; we never hand it one
        raise MaskError(f"TRL dropped {len(rows) - len(trainer.train_dataset)} of {len(rows)} examples as fully masked")
    check_masks(trainer.train_dataset)
    trainer.add_callback(_ForwardLogs(logger or NoOpLogger()))
    trainer.add_callback(_KeepOptimizerInLatestOnly(out_dir))
    _set_aside_incomplete(out_dir)
    resumable = [c for c in checkpoints(out_dir) if _has_optimizer_state(c)]
    resume = str(resumable[-1]) if resumable else None  # weights-only checkpoints cannot resume exactly
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    state = trainer.state
    if not checkpoints(out_dir) or _step(checkpoints(out_dir)[-1]) != state.global_step:
        _save_final(trainer, out_dir)
    tokens = sum(len(r["input_ids"]) for r in rows) * cfg.train.num_train_epochs
    runtime = time.time() - t0
    t = cfg.train
    compute = accounting(
        [len(r["input_ids"]) for r in rows],
        [sum(r["completion_mask"]) for r in rows],
        # ZeRO-3 partitions parameters: ds_numel is the full size, numel() the local shard
        parameters=sum(getattr(p, "ds_numel", p.numel()) for p in trainer.model.parameters()),
        global_step=state.global_step,
        global_batch=t.per_device_train_batch_size * t.gradient_accumulation_steps * t.num_devices,
        epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        train_wall_s=runtime,
    )
    metrics = {
        "train_loss": result.training_loss,
        "global_step": state.global_step,
        "examples": len(rows),
        "loss_tokens": sum(sum(r["completion_mask"]) for r in rows),
        "runtime_s": round(runtime, 2),
        "tokens_per_s": round(tokens / max(runtime, 1e-9), 1),
        "resumed": resume is not None,
        "resumed_from": resume,
        "checkpoint_steps": [_step(p) for p in checkpoints(out_dir)],
        "compute": compute,  # cft_lab.train.compute: tokens, steps, FLOPs estimate, wall time
        "log_history": state.log_history,
    }
    if state.is_world_process_zero:
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def training_dtype(cfg: Config) -> str:
    """Weights are loaded in float32 for full fine-tuning without DeepSpeed, so that AdamW updates fp32 master
    weights under bf16 autocast (pure-bf16 updates at lr 5e-6 mostly round to zero); DeepSpeed keeps its own fp32
    master copy, and LoRA trains fp32 adapters, so both load in the model's dtype."""
    if cfg.train.deepspeed and cfg.train.launcher != "inprocess" or cfg.train.lora is not None:
        return cfg.model.dtype
    return "float32"


def _save_final(trainer, out_dir: Path) -> None:
    """Save the last step as a complete checkpoint (weights + trainer state), atomically."""
    step = trainer.state.global_step
    tmp = out_dir / f".checkpoint-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    if trainer.state.is_world_process_zero:
        trainer.state.save_to_json(str(tmp / "trainer_state.json"))
        tmp.rename(out_dir / f"checkpoint-{step}")


def train_subprocess(cfg: Config, model_dir: str, rows_path: Path, out_dir: Path) -> dict:
    """Run the same training under torchrun/deepspeed from a resolved request file (multi-GPU)."""
    request = out_dir / "request.json"
    request.write_text(
        json.dumps(
            {"config": as_dict(cfg), "model_dir": model_dir, "rows": str(rows_path), "out_dir": str(out_dir)}, indent=2
        )
    )
    n = str(cfg.train.num_devices)
    # the launchers' modules under this interpreter, so an un-activated virtual environment works too
    if cfg.train.launcher == "torchrun":
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={n}",
            "-m",
            "cft_lab.train.trainer",
            str(request),
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "deepspeed.launcher.runner",
            f"--num_gpus={n}",
            "--module",
            "cft_lab.train.trainer",
            str(request),
        ]
    log.info("launching: %s", " ".join(cmd))
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return json.loads((out_dir / "metrics.json").read_text())


def _worker(argv: list[str]) -> None:
    """Entry point under torchrun/deepspeed. DeepSpeed's launcher adds ``--local_rank=N`` before our argument."""
    import argparse

    from omegaconf import OmegaConf

    from cft_lab.pipeline.store import read_jsonl

    parser = argparse.ArgumentParser()
    parser.add_argument("request")
    parser.add_argument("--local_rank", type=int, default=None)  # set by deepspeed; torchrun uses LOCAL_RANK
    args = parser.parse_args(argv)
    req = json.loads(Path(args.request).read_text())
    cfg = to_config(OmegaConf.create(req["config"]))
    rows = list(read_jsonl(Path(req["rows"])))
    train_inprocess(cfg, req["model_dir"], rows, Path(req["out_dir"]))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    _worker(sys.argv[1:])
