"""Checkpoint selection over every device of a job: one engine per device slot, checkpoints dealt to free slots.

The paper's recipe saves a checkpoint every 2 steps (about 49 for a 7B run on 50K examples); scoring them one after
the other on one GPU of an 8-GPU job leaves seven idle for hours. Here each slot (``inference.tensor_parallel_size``
GPUs, named by ``CUDA_VISIBLE_DEVICES``) runs one worker process per checkpoint: it loads the checkpoint, generates
the validation benchmark (``python -m cft_lab.eval.select_pool REQUEST --checkpoint DIR --out DIR --slot K``) and
exits; the next checkpoint goes to the first slot that is free. The launching process grades each checkpoint as soon
as its generations are complete, in a thread, while the slots keep generating.

Why processes and not one engine per slot in this process: an engine owns its devices for its lifetime and vLLM
frees GPU memory reliably only when its process ends, so a process per checkpoint is what returns a slot clean.

Files, in the select artefact: ``generations/<step>/<benchmark>.jsonl`` (as the in-process path writes them),
``generations/<step>/device.json`` (slot, ``CUDA_VISIBLE_DEVICES``, pid, start and end times) and
``generations/<step>/worker.log`` (the worker's output). Without CUDA the slots are CPU processes standing in for
devices (``eval.select.devices=N``): the scheduling, the files and the selection are the same, which is how the tests
check them on a CPU machine.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

from cft_lab.config import Config, as_dict

log = logging.getLogger(__name__)


def device_slots(cfg: Config) -> list[Optional[str]]:
    """The ``CUDA_VISIBLE_DEVICES`` of each engine slot of this job (None: a CPU process standing in for a device).

    With CUDA: ``eval.select.devices`` slots (None: as many as the job's visible GPUs allow) of
    ``inference.tensor_parallel_size`` GPUs each; asking for more GPUs than the job sees is an error naming both."""
    from cft_lab.config import effective_tensor_parallel

    tp = effective_tensor_parallel(cfg.model, cfg.inference)
    asked = cfg.eval.select.devices
    ids = visible_gpus()
    if not ids:
        return [None] * (asked or 1)
    n = asked if asked is not None else max(1, len(ids) // tp)
    if n * tp > len(ids):
        raise ValueError(
            f"eval.select.devices={n} x inference.tensor_parallel_size={tp} needs {n * tp} GPUs; this job sees "
            f"{len(ids)} ({','.join(ids)}): lower eval.select.devices or ask the launcher for more GPUs"
        )
    return [",".join(ids[k * tp : (k + 1) * tp]) for k in range(n)]


def visible_gpus() -> list[str]:
    """The GPU ids this process may use (``CUDA_VISIBLE_DEVICES``, else every device torch counts); [] without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [v.strip() for v in visible.split(",") if v.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def generate_on_slots(
    cfg: Config, todo: list[tuple[int, Path]], out: Path, slots: list[Optional[str]], poll_s: float = 0.2
) -> Iterator[int]:
    """Generate the validation benchmark of every ``(step, checkpoint)`` of ``todo`` on the slots, at most one worker
    per slot at a time; yields each step as its generations are complete (in completion order). A failed worker
    stops the others and raises, naming the checkpoint, the slot and the end of its log."""
    request = out / "select_request.json"
    request.write_text(json.dumps({"config": as_dict(cfg)}, indent=2), encoding="utf-8")
    pending = list(todo)
    running: dict[int, tuple[subprocess.Popen, int, Path]] = {}  # slot -> (worker, step, its generations folder)
    try:
        while pending or running:
            for k, visible in enumerate(slots):
                if k in running or not pending:
                    continue
                step, ckpt = pending.pop(0)
                gen_dir = out / "generations" / str(step)
                gen_dir.mkdir(parents=True, exist_ok=True)
                env = {**os.environ, "PYTHONUNBUFFERED": "1"}
                if visible is not None:
                    env["CUDA_VISIBLE_DEVICES"] = visible
                cmd = [sys.executable, "-m", "cft_lab.eval.select_pool", str(request), "--checkpoint", str(ckpt),
                       "--out", str(gen_dir), "--slot", str(k)]  # fmt: skip
                with (gen_dir / "worker.log").open("ab") as logf:
                    running[k] = (subprocess.Popen(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT), step, gen_dir)
                log.info("select: checkpoint-%d on slot %d (%s)", step, k, visible or "CPU stand-in")
            for k, (proc, step, gen_dir) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[k]
                if proc.returncode != 0:
                    tail = (gen_dir / "worker.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(
                        f"select: the worker for checkpoint-{step} on slot {k} exited {proc.returncode}:\n{tail}"
                    )
                yield step
            time.sleep(poll_s)
    finally:
        for proc, _, _ in running.values():
            proc.kill()
            proc.wait()


def select_generations(
    cfg: Config,
    todo: list[tuple[int, Path]],
    out: Path,
    generate_here: Callable[[int, Path], None],
    grade: Callable[[int], None],
) -> int:
    """Generate and grade every checkpoint of ``todo``: on the job's device slots when there are several (worker
    processes), else in this process with ``generate_here``; each checkpoint is graded by ``grade`` in a thread as
    soon as its generations are complete, while the next ones generate. Returns how many slots generated (for the
    compute ledger: each holds the engine's tensor-parallel size of devices)."""
    from concurrent.futures import ThreadPoolExecutor

    slots = device_slots(cfg) if todo else []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="select-grade") as pool:
        futures = []
        used = 1
        if len(slots) > 1 and len(todo) > 1:
            log.info("select: %d checkpoints on %d device slots", len(todo), len(slots))
            used = min(len(slots), len(todo))
            for step in generate_on_slots(cfg, todo, out, slots):
                futures.append(pool.submit(grade, step))
        else:
            for step, ckpt in todo:
                generate_here(step, ckpt)
                futures.append(pool.submit(grade, step))
        for f in futures:
            f.result()
    return used


def _worker(argv: list[str]) -> None:
    """One checkpoint's validation generations on this process's device slot (see the module doc)."""
    import argparse

    from omegaconf import OmegaConf

    from cft_lab.config import selection_inference, to_config
    from cft_lab.eval import benchmarks, engine
    from cft_lab.eval.generation import make_generator

    ap = argparse.ArgumentParser()
    ap.add_argument("request")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--slot", type=int, required=True)
    args = ap.parse_args(argv)
    cfg = to_config(OmegaConf.create(json.loads(Path(args.request).read_text())["config"]))
    if cfg.run.num_threads:
        import torch

        torch.set_num_threads(cfg.run.num_threads)
    out = Path(args.out)
    info = {"slot": args.slot, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(),
            "checkpoint": Path(args.checkpoint).name, "start": time.time()}  # fmt: skip
    sel = cfg.eval.select
    generator = make_generator(args.checkpoint, cfg.model, selection_inference(cfg.inference))
    try:
        engine.generate_benchmark(
            generator,
            sel.benchmark,
            benchmarks.template_for(sel.benchmark, cfg.model.eval_template),
            out,
            limit=sel.limit,
            seed=cfg.inference.seed,
            n=1,
            desc=f"select {Path(args.checkpoint).name} (slot {args.slot})",
        )
    finally:
        generator.close()
    info["end"] = time.time()
    (out / "device.json").write_text(json.dumps(info), encoding="utf-8")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    _worker(sys.argv[1:])
