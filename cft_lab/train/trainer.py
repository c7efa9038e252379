"""The train stage: one code path for every arm (SFT, SFT-verified, SFT-teacher, CFT).

Input: tokenized rows ``{id, input_ids, completion_mask}`` from ``cft_lab.train.tokenize.tokenize_pairs``. TRL's
``SFTTrainer`` builds the labels from ``completion_mask`` (prompt tokens -100), pads, and trains; we check that no
prepared example is fully masked. Output, in the artefact directory::

    checkpoint-<step>/   model weights + tokenizer; the newest full-state save also holds the optimizer, scheduler
                         and RNG state an interrupted run resumes from (none is kept once training is done)
    metrics.json         train loss, steps, tokens seen, runtime, loss normalisation, log history, checkpoint steps
    stopped.json         only while a run that was stopped by a signal waits to be resumed: the step it saved at

**Saves.** Every ``save_steps`` optimizer steps (the selection interval) the weights are saved; every
``train.full_state_steps`` steps, and when a stop signal arrives, the full resumable state (the paper's 7B recipe
saved every 2 steps: with the optimizer state each time that is about 5 TB written per run). **Stop signals.**
SIGUSR1, SIGUSR2 (submitit's pre-emption and timeout signal) and SIGTERM make every rank finish its step, agree (one
all-reduce), save the full state and stop; the stage then fails with :class:`TrainingInterrupted` (a rerun, or
submitit's requeue, resumes from that save). Under torchrun / deepspeed the launching process forwards the signal to
the training processes and waits for their save (``train.stop_grace_s``) before it lets the signal's previous handler
(submitit's requeue) run.

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
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

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

    from cft_lab.options import LossNormalization

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
        # which saves hold the full state is decided save by save (_SaveSchedule)
        save_only_model=t.full_state_steps is not None,
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",
        # rows arrive tokenized and cut at cutoff_len (cft_lab.train.tokenize); TRL refuses a max_length with its
        # padding-free path, which it could not enforce without packing rows into blocks (that would change the batch)
        max_length=None if t.packing else t.cutoff_len,
        completion_only_loss=True,
        packing=False,
        padding_free=t.packing,
        use_liger_kernel=t.use_liger_kernel,
        average_tokens_across_devices=t.loss_normalization == LossNormalization.global_batch,
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


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving its full state; a rerun (or submitit's requeue) resumes from it."""


#: The signals that make training save its full state and stop (submitit's pre-emption signal is USR2 by default).
STOP_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)


class StopRequest:
    """Set by a stop signal (:data:`STOP_SIGNALS`); the ranks agree on it once per step. Handlers are installed for the
    duration of a ``with`` block (main thread only) and the previous ones restored after it; :meth:`chain` then hands
    the signal to the previous handler (submitit's requeue), if there is one."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            log.warning("caught %s: saving the full state at the end of this step, then stopping", _name(signum))
        self.signum = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self) -> bool:
        """Whether any rank was asked to stop (an all-reduce when several processes train)."""
        import torch
        import torch.distributed as dist

        flag = self.signum is not None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
            t = torch.tensor([1 if flag else 0], device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def chain(self, message: str) -> None:
        """After the save: let the previous handler of the signal run (submitit requeues the job and exits), else raise
        :class:`TrainingInterrupted` with ``message`` (the cell is recorded as failed; a rerun resumes)."""
        previous = self._previous.get(self.signum) if self.signum is not None else None
        log.warning(message)  # said here: submitit's handler (the previous one) exits the process
        if callable(previous):
            previous(self.signum, None)
        raise TrainingInterrupted(message)


def _name(signum: int) -> str:
    return signal.Signals(signum).name


class _SaveSchedule(TrainerCallback):
    """Decides, step by step, what a save holds: the weights at every ``save_steps`` (the Trainer's own schedule), the
    full resumable state every ``full_state_steps`` (None: at every save) and when a stop was asked for, after which
    training stops. Toggling ``args.save_only_model`` is how the Trainer's ``_save_checkpoint`` is told, save by save,
    whether to write the optimizer, scheduler and RNG state."""

    def __init__(self, full_state_steps: Optional[int], stop: StopRequest):
        self.full_state_steps, self.stop = full_state_steps, stop
        self.stopped_at: Optional[int] = None

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        stop = self.stop.agreed()
        full = stop or self.full_state_steps is None or step % self.full_state_steps == 0
        if full and (stop or self.full_state_steps is not None):
            control.should_save = True
        if control.should_save:
            args.save_only_model = not full
        if stop:
            control.should_training_stop = True
            self.stopped_at = step
        return control


def _drop_state(ckpt: Path) -> None:
    for p in list(ckpt.glob("optimizer*")) + list(ckpt.glob("scheduler*")) + list(ckpt.glob("rng_state*")):
        p.unlink(missing_ok=True)
    for p in ckpt.glob("global_step*"):
        shutil.rmtree(p, ignore_errors=True)


class _KeepNewestFullState(TrainerCallback):
    """After each save, drop optimizer/scheduler state (and DeepSpeed's ``global_step*`` shards) from every checkpoint
    but the newest that holds one: selection needs every checkpoint's weights, resuming needs only the newest full
    state. The deletion (about 90 GB for a 7B ZeRO-3 run) runs in a background thread of rank 0, so no rank waits
    for it; :meth:`join` waits for the last one."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self._thread: Optional[threading.Thread] = None

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        full = [c for c in checkpoints(self.out_dir) if _has_optimizer_state(c)]
        old = full[:-1]
        if old:
            self.join()
            self._thread = threading.Thread(target=lambda: [_drop_state(c) for c in old], name="drop-old-state")
            self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None


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
    keeper = _KeepNewestFullState(out_dir)
    trainer.add_callback(keeper)
    _set_aside_incomplete(out_dir)
    (out_dir / "stopped.json").unlink(missing_ok=True)
    resumable = [c for c in checkpoints(out_dir) if _has_optimizer_state(c)]
    resume = str(resumable[-1]) if resumable else None  # weights-only checkpoints cannot resume exactly
    t0 = time.time()
    with StopRequest() as stop:
        schedule = _SaveSchedule(cfg.train.full_state_steps, stop)
        trainer.add_callback(schedule)
        result = trainer.train(resume_from_checkpoint=resume)
        keeper.join()
        state = trainer.state
        if schedule.stopped_at is not None:
            why = _name(stop.signum) if stop.signum is not None else "a signal caught by another rank"
            message = (
                f"training stopped on {why} at step {state.global_step} of {state.max_steps} and saved its full "
                f"state in checkpoint-{state.global_step}; a rerun resumes from it"
            )
            if state.is_world_process_zero:
                (out_dir / "stopped.json").write_text(json.dumps({"step": state.global_step, "signal": why}))
            stop.chain(message)
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
        "loss_normalization": str(cfg.train.loss_normalization),
        "packing": cfg.train.packing,
        "resumed": resume is not None,
        "resumed_from": resume,
        "checkpoint_steps": [_step(p) for p in checkpoints(out_dir)],
        "compute": compute,  # cft_lab.train.compute: tokens, steps, FLOPs estimate, wall time
        "log_history": state.log_history,
    }
    if state.is_world_process_zero:
        for ckpt in checkpoints(out_dir):  # done: nothing resumes from here on, only the weights are read
            step = _step(ckpt)
            if step % args.save_steps and step != state.global_step:
                # a save made on a stop signal, off the selection interval: selection reads the same checkpoints
                # whether or not the run was interrupted
                shutil.rmtree(ckpt, ignore_errors=True)
            else:
                _drop_state(ckpt)
        metrics["checkpoint_steps"] = [_step(p) for p in checkpoints(out_dir)]
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
    """Run the same training under torchrun/deepspeed from a resolved request file (multi-GPU).

    The launcher runs in its own session with the stop signals ignored (its training processes install their own
    handlers); a stop signal that reaches this process is forwarded to the training processes as SIGUSR1, this
    process waits for them to save (at most ``train.stop_grace_s``), then the signal's previous handler runs
    (submitit's requeue) or :class:`TrainingInterrupted` is raised."""
    request = out_dir / "request.json"
    request.write_text(
        json.dumps(
            {"config": as_dict(cfg), "model_dir": model_dir, "rows": str(rows_path), "out_dir": str(out_dir)}, indent=2
        )
    )
    (out_dir / "stopped.json").unlink(missing_ok=True)
    cmd = launch_command(cfg, request)
    log.info("launching: %s", " ".join(cmd))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cfg.train.cuda_alloc_conf and "PYTORCH_CUDA_ALLOC_CONF" not in os.environ:
        env["PYTORCH_CUDA_ALLOC_CONF"] = cfg.train.cuda_alloc_conf
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_ignore_stop_signals)
    with _Forward(proc, cfg.train.stop_grace_s) as forward:
        while proc.poll() is None:
            forward.tick()
            time.sleep(0.2)
    stopped = out_dir / "stopped.json"
    if forward.stop.signum is not None or stopped.is_file():
        at = json.loads(stopped.read_text())["step"] if stopped.is_file() else None
        forward.stop.chain(
            f"training stopped on {_name(forward.stop.signum) if forward.stop.signum else 'a signal'}"
            + (f" and saved its full state in checkpoint-{at}" if at is not None else " before it could save")
            + "; a rerun resumes from the newest full state"
        )
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return json.loads((out_dir / "metrics.json").read_text())


def launch_command(cfg: Config, request: Path) -> list[str]:
    """The torchrun / deepspeed command line of a multi-device run (the launchers' modules under this interpreter,
    so an un-activated virtual environment works too)."""
    n = str(cfg.train.num_devices)
    if cfg.train.launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                "-m", "cft_lab.train.trainer", str(request)]  # fmt: skip
    return [sys.executable, "-m", "deepspeed.launcher.runner", f"--num_gpus={n}",
            "--module", "cft_lab.train.trainer", str(request)]  # fmt: skip


def _ignore_stop_signals() -> None:
    """In the launcher's process (before exec): ignore SIGUSR1/SIGUSR2, whose default action would kill torchrun; its
    training processes inherit the setting and replace it with their own handlers (:class:`StopRequest`)."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


class _Forward:
    """While the launcher runs: a stop signal (or Ctrl-C) is forwarded to its session as SIGUSR1 (save and stop);
    after ``grace_s`` without an exit the session is killed. Leaving the block with the launcher still running (an
    exception here) kills it too, so no training process outlives its stage."""

    def __init__(self, proc: subprocess.Popen, grace_s: float):
        self.proc, self.grace_s = proc, grace_s
        self.stop = StopRequest()
        self.deadline: Optional[float] = None
        self._int_handler: Any = None

    def __enter__(self) -> _Forward:
        self.stop.__enter__()
        if threading.current_thread() is threading.main_thread():
            self._int_handler = signal.signal(signal.SIGINT, self.stop._handle)
        return self

    def tick(self) -> None:
        if self.stop.signum is not None and self.deadline is None:
            self._signal_group(signal.SIGUSR1)
            self.deadline = time.time() + self.grace_s
        elif self.deadline is not None and time.time() > self.deadline:
            log.error("training did not stop within train.stop_grace_s=%gs of the signal: killing it", self.grace_s)
            self._signal_group(signal.SIGKILL)
            self.deadline = float("inf")

    def _signal_group(self, sig: int) -> None:
        """Signal the launcher's session and every process below it: torchrun starts each rank in a session of its
        own, so a signal to the launcher's process group alone would not reach the ranks."""
        import psutil

        try:
            below = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            below = []
        for p in below:
            try:
                p.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait()
        self.stop.__exit__(*exc)
        if self._int_handler is not None:
            signal.signal(signal.SIGINT, self._int_handler)
            if self.stop.signum == signal.SIGINT:
                self.stop._previous[signal.SIGINT] = self._int_handler


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
    try:
        train_inprocess(cfg, req["model_dir"], rows, Path(req["out_dir"]))
    except TrainingInterrupted as e:  # saved; stopped.json tells the launching process
        log.warning("%s", e)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    _worker(sys.argv[1:])
