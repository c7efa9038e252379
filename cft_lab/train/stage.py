"""The train stage: the cell's objective turns the data stage's records into pairs, and TRL trains the base model on
them (layout of the artefact: ``cft_lab.pipeline.store``).

Training resumes: an interrupted artefact keeps its complete checkpoints and the trainer continues from the last one
that still holds optimizer state (``cft_lab.train.trainer``). Multi-GPU runs go to a ``torchrun`` / ``deepspeed``
subprocess from a resolved config file (docs/pitfalls.md#orchestration).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from cft_lab.config import Config
from cft_lab.options import Launcher
from cft_lab.pipeline.store import Store, read_jsonl, write_json, write_jsonl
from cft_lab.report.tracking import Logger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What the train stage hands on: the artefact (checkpoints) and the arm's pair and token counts."""

    path: Path
    pairs: dict  # objective, records, pairs, skipped, examples, truncated, dropped, loss_tokens, ...

    @classmethod
    def read(cls, path: Path) -> TrainResult:
        return cls(path=path, pairs=json.loads((path / "pairs.json").read_text(encoding="utf-8")))


def run_train(cfg: Config, store: Store, key: str, data_dir: Path, logger: Logger) -> TrainResult:
    from cft_lab.train.modeling import load_tokenizer, model_path
    from cft_lab.train.objectives import build_pairs
    from cft_lab.train.tokenize import tokenize_pairs
    from cft_lab.train.trainer import train_inprocess, train_subprocess

    with store.claim("train", key, resume=True) as art:  # checkpoints of an interrupted run are kept: it resumes
        if not art.done:
            out = art.path
            base = model_path(cfg.model)
            records = list(read_jsonl(data_dir / "records.jsonl"))
            pairs, pair_counts = build_pairs(cfg.objective, records)
            tokenizer = load_tokenizer(base, cfg.model.hub_revision(), cfg.model.trust_remote_code)
            rows, tok_counts = tokenize_pairs(pairs, tokenizer, cfg.train.cutoff_len, cfg.train.truncation)
            counts = {"objective": cfg.objective.name, **pair_counts, **tok_counts}
            write_json(out / "pairs.json", counts)
            log.info("train %s: %s", key, counts)
            logger.summary({f"data/{k}": v for k, v in counts.items() if not isinstance(v, dict)})
            if cfg.train.launcher == Launcher.inprocess:
                metrics = train_inprocess(cfg, base, rows, out, logger)
            else:
                rows_path = out / "rows.jsonl"
                write_jsonl(rows_path, rows)
                metrics = train_subprocess(cfg, base, rows_path, out)
                for entry in metrics.get("log_history", []):
                    logger.log({f"train/{k}": v for k, v in entry.items() if k != "step"}, step=entry.get("step"))
            art.meta["global_step"] = metrics["global_step"]
    return TrainResult.read(art.path)
