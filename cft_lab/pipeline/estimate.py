"""What a cell will cost before it runs: GPU-hours per stage, the job's wall time, its GPUs, and disk (peak while
training, kept after selection), for the dry run, the free-space check of preflight and the SLURM launcher's time limit.

Inputs are the config, the run store (a stage whose artefact is DONE costs nothing more; a built dataset's card gives
the real example and token counts) and the cluster's assumptions (``conf/cluster``: peak FLOPs, training MFU, decode
tokens/s, engine load time). The arithmetic, per cell:

* train: ``6 x params x tokens`` FLOPs (``8 x`` with gradient checkpointing: the forward pass runs twice) at
  ``peak x train_mfu`` per GPU; tokens = examples x mean tokens per example x epochs (no padding counted);
* select: one engine load and the validation set's generations per checkpoint, the checkpoints spread over the job's
  engine slots; infer: one engine load and every benchmark not yet generated; decode speed
  ``decode_tokens_per_s x 7e9 / params`` per GPU (``output_tokens_per_item`` per item);
* disk: a weights-only checkpoint is ``params x bytes of model.dtype``; a full resumable state adds about 12 bytes a
  parameter (fp32 master weights and two Adam moments); while training, every checkpoint's weights plus at most two
  full states (the newest is written before the older one is deleted); after selection, the selected and the last.

Every figure says what it assumed (``Estimate.assumptions``); nothing here is measured.

>>> round(train_gpu_hours(7.62e9, 6.0e7, 989.0, 0.15, checkpointing=True), 1)  # the paper's 7B: "8 GPU-hours"
6.8
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from cft_lab.options import KeepCheckpoints, ModelSource
from cft_lab.train.objectives import spec

if TYPE_CHECKING:
    from cft_lab.config import Config
    from cft_lab.pipeline.plan import CellPlan
    from cft_lab.pipeline.store import Store

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
FULL_STATE_BYTES_PER_PARAM = 12  # fp32 master weights + Adam's two moments (ZeRO-3 shards them, the total is the same)
REFERENCE_PARAMS = 7e9  # decode_tokens_per_s is stated for a 7B model


@dataclass
class Estimate:
    """One cell's estimate (None where an input is unknown)."""

    gpus: int  # GPUs of the cell's job (training: train.num_devices; evaluation only: the engine's)
    gpu_hours: dict[str, float] = field(default_factory=dict)  # train / select / infer
    wall_hours: float = 0.0
    disk_peak_gb: Optional[float] = None  # while training
    disk_kept_gb: Optional[float] = None  # after selection (what the cell leaves in the store)
    assumptions: list[str] = field(default_factory=list)

    @property
    def total_gpu_hours(self) -> float:
        return sum(self.gpu_hours.values())

    def line(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in self.gpu_hours.items() if v > 0) or "nothing left to run"
        disk = (
            f"disk peak ~{size_text(self.disk_peak_gb)}, kept ~{size_text(self.disk_kept_gb)}"
            if self.disk_peak_gb is not None
            else "disk unknown (set model.num_parameters)"
        )
        return (
            f"~{self.total_gpu_hours:.1f} GPU-h ({stages}) on a job of {self.gpus} GPU(s), ~{self.wall_hours:.1f} h "
            f"wall; {disk}"
        )


def size_text(x: Optional[float]) -> str:
    """GB as text: TB, GB or MB."""
    if x is None:
        return "?"
    return f"{x / 1000:.2f} TB" if x >= 1000 else f"{x:.1f} GB" if x >= 1 else f"{x * 1000:.0f} MB"


def train_gpu_hours(params: float, tokens: float, peak_tflops: float, mfu: float, checkpointing: bool) -> float:
    """GPU-hours of training on ``tokens`` tokens: 6 FLOPs a parameter a token (8 with recomputed activations)."""
    flops = (8 if checkpointing else 6) * params * tokens
    return flops / (peak_tflops * 1e12 * mfu) / 3600


def count_parameters(cfg: Config) -> Optional[float]:
    """``model.num_parameters`` when set, else counted from the safetensors headers of a testbed or local model
    folder (None for a hub model without it)."""
    if cfg.model.num_parameters:
        return float(cfg.model.num_parameters)
    from pathlib import Path

    from cft_lab.train.modeling import model_path

    try:
        folder = Path(model_path(cfg.model))
    except FileNotFoundError:
        return None
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for name in st.keys():
                total += math.prod(st.get_slice(name).get_shape())
    return float(total)


def _examples_and_tokens(cfg: Config, store: Optional[Store], data_key: Optional[str]) -> tuple[int, float, str]:
    """(examples, mean tokens per example, where these come from): the built dataset's card, else the config."""
    from cft_lab.config import uses_pool

    if store is not None and data_key and store.done("data", data_key):
        card = json.loads((store.path("data", data_key) / "card.json").read_text(encoding="utf-8"))
        arm = card.get("arms", {}).get(cfg.objective.name, {})
        n = int(arm.get("usable") or card.get("records") or 0)  # the arm's usable records, else all
        if uses_pool(cfg) and cfg.data.pool_sample:
            n = min(n, cfg.data.pool_sample)
        if n:
            tokens = min(cfg.data.tokens_per_row or cfg.train.cutoff_len / 2, cfg.train.cutoff_len)
            return n, float(tokens), "the built dataset's card"
    if uses_pool(cfg) and cfg.data.pool_sample:  # pairs sampled from the pool: that many train
        tokens = min(cfg.data.tokens_per_row or cfg.train.cutoff_len / 2, cfg.train.cutoff_len)
        return cfg.data.pool_sample, float(tokens), "data.pool_sample"
    src, tb = cfg.data.source, cfg.data.testbed
    rows = cfg.data.rows or (src.sample or src.limit if src is not None else None) or (tb.n_train if tb else None)
    tokens = cfg.data.tokens_per_row or cfg.train.cutoff_len / 2
    why = "data.rows" if cfg.data.rows else "the source's sample/limit" if src is not None else "testbed.n_train"
    if not cfg.data.tokens_per_row:
        why += f", {tokens:g} tokens per example assumed (half of cutoff_len; set data.tokens_per_row)"
    return int(rows or 0), float(min(tokens, cfg.train.cutoff_len)), why


def estimate_cell(cfg: Config, plan: CellPlan, store: Optional[Store] = None) -> Estimate:
    """The cell's estimate (module doc); stages already DONE in ``store`` cost nothing."""
    from cft_lab.config import effective_tensor_parallel
    from cft_lab.eval import benchmarks
    from cft_lab.train.trainer import save_steps_for

    cl, t, inf = cfg.cluster, cfg.train, cfg.inference
    trains = spec(cfg.objective).trains
    tp = effective_tensor_parallel(cfg.model, inf) if inf.backend == "vllm" else 1
    est = Estimate(gpus=max(t.num_devices, tp) if trains else tp)
    params = count_parameters(cfg)
    if params is None:
        est.assumptions.append("parameters unknown: no GPU-hour or disk figure (set model.num_parameters)")
        return est
    est.assumptions.append(f"{params / 1e9:.3g}B parameters")

    def done(stage: str, key: str) -> bool:
        return store is not None and store.done(stage, key)

    decode = cl.decode_tokens_per_s * REFERENCE_PARAMS / params  # tokens/s per GPU at this size
    est.assumptions.append(f"decode {decode:.0f} tokens/s/GPU, {cl.output_tokens_per_item} tokens/item")
    wall = 0.0
    weights = params * BYTES.get(str(cfg.model.dtype), 2) / 1e9  # GB
    if trains:
        data_key = next((s.key for s in plan.stages if s.stage == "data" and s.role is None), None)
        examples, per_example, why = _examples_and_tokens(cfg, store, data_key)
        steps, spacing = save_steps_for(cfg, examples)
        n_ckpts = max(1, math.ceil(steps / spacing))
        tokens = examples * per_example * t.num_train_epochs
        est.assumptions.append(f"{examples} examples x {per_example:g} tokens ({why}), {steps} steps, {n_ckpts} ckpts")
        est.assumptions.append(f"MFU {cl.train_mfu:g} of {cl.peak_tflops:g} TFLOPs")
        if not done("train", plan.key_of("train")):
            h = train_gpu_hours(params, tokens, cl.peak_tflops, cl.train_mfu, t.gradient_checkpointing)
            est.gpu_hours["train"] = h
            wall += h / t.num_devices
        if not done("select", plan.key_of("select")):
            items = min(benchmarks.size(cfg.eval.select.benchmark), cfg.eval.select.limit or 10**9)
            per_ckpt = cl.engine_load_s + items * cl.output_tokens_per_item / (decode * tp)  # seconds on tp GPUs
            slots = max(1, (cfg.eval.select.devices or max(1, est.gpus // tp)))
            est.gpu_hours["select"] = n_ckpts * per_ckpt * tp / 3600
            wall += math.ceil(n_ckpts / slots) * per_ckpt / 3600
        full = params * FULL_STATE_BYTES_PER_PARAM / 1e9
        est.disk_peak_gb = n_ckpts * weights + 2 * full
        kept = 2 if t.keep_checkpoints == KeepCheckpoints.selected_last else n_ckpts
        est.disk_kept_gb = min(kept, n_ckpts) * weights
    else:
        est.disk_peak_gb = est.disk_kept_gb = 0.0
    todo = [b for b, k in plan.infer_keys().items() if b != "critique" and not done("infer", k)]
    if todo:
        items = sum(min(benchmarks.size(b), cfg.eval.limit or 10**9) for b in todo) * inf.n
        seconds = cl.engine_load_s + items * cl.output_tokens_per_item / (decode * tp)
        est.gpu_hours["infer"] = seconds * tp / 3600
        wall += seconds / 3600
    est.wall_hours = wall
    if cfg.model.source == ModelSource.testbed:
        est.assumptions.append("a testbed model: these are GPU figures; on CPU it runs in minutes")
    return est


def free_gb(path) -> float:
    """Free space on the filesystem of ``path`` (its nearest existing parent), in GB."""
    import shutil
    from pathlib import Path

    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free / 1e9
