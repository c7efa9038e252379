"""The train stage: the cell's objective turns the data stage's records into pairs, and TRL trains the base model on
them (layout of the artefact: ``cft_lab.pipeline.store``).

Training resumes: an interrupted artefact keeps its complete checkpoints and the trainer continues from the last one
that still holds optimizer state (``cft_lab.train.trainer``). Multi-GPU runs go to a ``torchrun`` / ``deepspeed``
subprocess from a resolved config file (docs/pitfalls.md#orchestration).

Beyond one objective on one record set:

* **A mixture** (``objective.parts``): one run over several parts, each with its own records (its own data
  artefact) and its own objective, which builds and masks its pairs; ``count`` / ``fraction`` keep a seeded sample
  of a part's pairs. The parts' rows are concatenated; the trainer's sampler shuffles them together. ``pairs.json``
  reports the totals and every part's counts (``parts``).
* **A chain** (``chain`` in the config): ``base`` is the parent cell's selected checkpoint, not the base model.
* **Length matching** (``objective.length_match``, CFT-Short): after tokenization, only the pairs whose completion
  lengths follow the reference arm's distribution on the same records are kept (``cft_lab.train.lengths``); the
  report (both distributions, KS statistics, sizes) goes into ``pairs.json`` under ``length_match``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cft_lab.config import Config, ObjectiveConfig, load_option
from cft_lab.options import Launcher
from cft_lab.pipeline.store import Store, read_jsonl, write_json, write_jsonl
from cft_lab.report.tracking import Logger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPart:
    """The pairs of one objective on one data artefact's records (a cell has one; a mixture one per part)."""

    objective: ObjectiveConfig
    records: Path  # the data artefact's folder (records.jsonl)
    count: Optional[int] = None
    fraction: Optional[float] = None
    name: str = ""


@dataclass(frozen=True)
class TrainResult:
    """What the train stage hands on: the artefact (checkpoints) and the arm's pair and token counts."""

    path: Path
    pairs: dict  # objective, records, pairs, skipped, examples, truncated, dropped, loss_tokens, ... (+ parts)
    compute: Optional[dict] = None  # cft_lab.train.compute (None for an artefact trained before it existed)

    @classmethod
    def read(cls, path: Path) -> TrainResult:
        metrics = path / "metrics.json"
        compute = json.loads(metrics.read_text(encoding="utf-8")).get("compute") if metrics.is_file() else None
        return cls(path=path, pairs=json.loads((path / "pairs.json").read_text(encoding="utf-8")), compute=compute)


def _sample(rows: list[dict], keep: int, seed: int) -> list[dict]:
    """``keep`` rows with the smallest sha256(seed:id), in their order (independent of file order and versions)."""
    ranked = sorted(rows, key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).hexdigest())
    chosen = {r["id"] for r in ranked[:keep]}
    return [r for r in rows if r["id"] in chosen]


def _part_rows(cfg: Config, part: TrainPart, tokenizer) -> tuple[list[dict], dict]:
    """Tokenized rows and counts of one part (objective, length matching, sampling)."""
    from cft_lab.train.objectives import build_pairs
    from cft_lab.train.tokenize import tokenize_pairs

    records = list(read_jsonl(part.records / "records.jsonl"))
    pairs, pair_counts = build_pairs(part.objective, records)
    rows, tok_counts = tokenize_pairs(pairs, tokenizer, cfg.train.cutoff_len, cfg.train.truncation)
    counts: dict = {"objective": part.objective.name, **pair_counts, **tok_counts}
    if part.objective.length_match is not None:
        rows, counts["length_match"] = _length_match(cfg, part.objective, records, rows, tokenizer)
    keep = part.count if part.count is not None else None
    if part.fraction is not None:
        keep = int(round(part.fraction * len(rows)))
    if keep is not None:
        if keep > len(rows):
            raise ValueError(f"{part.name or part.objective.name}: count {keep} > the {len(rows)} pairs it has")
        rows = _sample(rows, keep, cfg.train.seed)
        counts["sampled"] = keep
    if keep is not None or part.objective.length_match is not None:  # what trains, after selection
        counts.update(examples=len(rows), loss_tokens=sum(sum(r["completion_mask"]) for r in rows))
    return rows, counts


def _length_match(cfg: Config, objective: ObjectiveConfig, records: list[dict], rows: list[dict], tokenizer):
    """Keep the rows whose completion lengths follow the reference objective's on the same records."""
    from cft_lab.train.lengths import match_lengths
    from cft_lab.train.objectives import build_pairs
    from cft_lab.train.tokenize import tokenize_pairs

    lm = objective.length_match
    assert lm is not None
    reference_cfg = load_option("objective", lm.reference, ObjectiveConfig)
    ref_pairs, _ = build_pairs(reference_cfg, records)
    ref_rows, _ = tokenize_pairs(ref_pairs, tokenizer, cfg.train.cutoff_len, cfg.train.truncation)
    keep, report = match_lengths(
        {r["id"]: sum(r["completion_mask"]) for r in rows},
        [sum(r["completion_mask"]) for r in ref_rows],
        bins=lm.bins,
        seed=lm.seed,
    )
    report.update(reference_objective=lm.reference, measure="completion tokens (the loss part)")
    kept = set(keep)
    log.info(
        "length match: kept %d of %d pairs (KS %s -> %s)",
        len(kept),
        len(rows),
        report["ks_candidates"],
        report["ks_kept"],
    )
    return [r for r in rows if r["id"] in kept], report


def run_train(
    cfg: Config, store: Store, key: str, parts: list[TrainPart] | Path, logger: Logger, base: Optional[str] = None
) -> TrainResult:
    """Train the cell's arm on its parts (a data artefact's folder stands for the cell's one part); ``base`` replaces
    the model's base weights (a chain's parent checkpoint)."""
    from cft_lab.train.modeling import load_tokenizer, model_path
    from cft_lab.train.trainer import train_inprocess, train_subprocess

    if isinstance(parts, Path):
        parts = [TrainPart(cfg.objective, parts)]
    with store.claim("train", key, resume=True) as art:  # checkpoints of an interrupted run are kept: it resumes
        if not art.done:
            out = art.path
            base = base or model_path(cfg.model)
            revision = cfg.model.hub_revision() if base == cfg.model.path else None
            tokenizer = load_tokenizer(base, revision, cfg.model.trust_remote_code)
            rows, per_part = [], []
            for part in parts:
                part_rows, part_counts = _part_rows(cfg, part, tokenizer)
                rows += part_rows
                per_part.append({"name": part.name, **part_counts} if len(parts) > 1 else part_counts)
            if len(parts) == 1:
                counts = per_part[0]
            else:
                counts = {
                    "objective": cfg.objective.name,
                    **{k: sum(p[k] for p in per_part) for k in ("records", "pairs", "examples", "loss_tokens")},
                    **{k: sum(p[k] for p in per_part) for k in ("truncated", "dropped")},
                    "parts": per_part,
                }
            write_json(out / "pairs.json", counts)
            log.info("train %s: %s", key, {k: v for k, v in counts.items() if k != "parts"})
            logger.summary({f"data/{k}": v for k, v in counts.items() if not isinstance(v, (dict, list))})
            if cfg.train.launcher == Launcher.inprocess:
                metrics = train_inprocess(cfg, base, rows, out, logger)
            else:
                rows_path = out / "rows.jsonl"
                write_jsonl(rows_path, rows)
                metrics = train_subprocess(cfg, base, rows_path, out)
                for entry in metrics.get("log_history", []):
                    logger.log({f"train/{k}": v for k, v in entry.items() if k != "step"}, step=entry.get("step"))
            art.meta["global_step"] = metrics["global_step"]
            # the compute ledger (DONE.json "build"): the processes the launcher started, one device each
            inproc = cfg.train.launcher == Launcher.inprocess
            art.meta["devices"] = 1 if inproc else cfg.train.num_devices * cfg.train.num_nodes
            # what the weights started from: the base model, or a chain's parent checkpoint (store-relative)
            art.meta["base"] = store.relative(base) if Path(base).resolve().is_relative_to(store.root) else base
    return TrainResult.read(art.path)
