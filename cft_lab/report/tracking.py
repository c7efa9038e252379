"""Experiment loggers: a no-op one and Weights & Biases, behind the same three calls (no ``if wandb:`` branches).

W&B runs are offline unless ``logger.mode=online``; a run is named by its cell (``tiny_math/cft``), grouped by its
table, and holds the sanitized config, training curves, metrics and, at the end of a sweep, the rendered table.
Secrets never reach it: the config holds only the *names* of environment variables (``teacher.api_key_env``), and
``sanitize`` drops any value whose key looks like a secret as a second guard.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password)$", re.I)


def sanitize(obj: Any) -> Any:
    """Drop values stored under secret-looking keys (names of env vars, ``*_env``, are kept).

    >>> sanitize({"api_key": "sk-x", "api_key_env": "OPENAI_API_KEY", "n": {"token": 1}})
    {'api_key': '<redacted>', 'api_key_env': 'OPENAI_API_KEY', 'n': {'token': '<redacted>'}}
    """
    if isinstance(obj, dict):
        return {
            k: ("<redacted>" if _SECRET_KEY.search(str(k)) and v is not None else sanitize(v)) for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [sanitize(v) for v in obj]
    return obj


class Logger(Protocol):
    def log(self, metrics: dict, step: int | None = None) -> None: ...
    def summary(self, metrics: dict) -> None: ...
    def log_table(self, name: str, frame, image: Path | None = None) -> None: ...
    def finish(self, failed: bool = False) -> None: ...


class NoOpLogger:
    def log(self, metrics: dict, step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def log_table(self, name: str, frame, image: Path | None = None) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass


class WandbLogger:
    def __init__(self, cfg, name: str, group: str | None, config: dict, outputs: Path, job_type: str = "cell"):
        import wandb

        wdir = Path(cfg.dir) if cfg.dir else outputs / "wandb"
        wdir.mkdir(parents=True, exist_ok=True)
        for var, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
            os.environ.setdefault(var, str(wdir / f".{sub}"))  # keep W&B out of the home directory
        self._wandb = wandb
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            mode=cfg.mode,
            dir=str(wdir),
            name=name,
            group=group,
            job_type=job_type,
            config=sanitize(config),
            reinit="finish_previous",
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )
        # checkpoint selection is logged after training reached its last step: give it its own x-axis
        self.run.define_metric("select/step")
        self.run.define_metric("select/*", step_metric="select/step")

    def log(self, metrics: dict, step: int | None = None) -> None:
        self.run.log(metrics, step=step)

    def summary(self, metrics: dict) -> None:
        self.run.summary.update(metrics)

    def log_table(self, name: str, frame, image: Path | None = None) -> None:
        flat = frame.reset_index()
        table = self._wandb.Table(
            columns=[str(c) for c in flat.columns],
            data=[[None if v != v else v for v in row] for row in flat.itertuples(index=False)],
        )
        payload = {name: table}
        if image is not None and image.is_file():
            payload[f"{name}_plot"] = self._wandb.Image(str(image))
        self.run.log(payload)

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def make_logger(cfg, name: str, group: str | None, config: dict, outputs: Path, job_type: str = "cell") -> Logger:
    if cfg.name == "none" or cfg.mode == "disabled":
        return NoOpLogger()
    if cfg.name == "wandb":
        os.environ.setdefault("WANDB_SILENT", "true")
        return WandbLogger(cfg, name, group, config, outputs, job_type)
    raise ValueError(f"logger={cfg.name} is unknown; choose none or wandb")
