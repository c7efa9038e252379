"""Experiment loggers: a no-op one and Weights & Biases, behind the same three calls (no ``if wandb:`` branches).

W&B runs are offline unless ``logger.mode=online``; a run is named by its cell (``tiny_math/cft``), grouped by its
table, and holds the sanitized config, training curves, metrics and its graded items; at the end of a sweep a table
run holds the rendered table and the comparison tables (``cft_lab.report.dashboard``).

Run ids are deterministic (:func:`cell_run_id`, :func:`table_run_id`) and runs are opened with ``resume="allow"``,
so syncing the offline runs of a table twice, or a rerun of the same cell, lands in the same W&B run instead of a
duplicate. Secrets never reach it: the config holds only the *names* of environment variables
(``teacher.api_key_env``), and ``sanitize`` drops any value whose key looks like a secret as a second guard.
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


# The keys a cell's run holds that the dashboard's view (cft_lab.report.view) draws: one definition for both.
SELECT_STEP = "select/step"  # x-axis of the selection curve
SELECTED = "select/selected"  # one point per run: the selected checkpoint's validation accuracy, at its step
TEST_AVG = "test/avg_accuracy"  # mean accuracy over the cell's benchmarks (the paper's AVG column)
ITEMS_TABLE = "items"  # the W&B Table of the cell's graded items (cft_lab.report.items)


def select_key(benchmark: str) -> str:
    """History key of the validation accuracy per checkpoint: ``select/<benchmark>``."""
    return f"select/{benchmark}"


def score_key(benchmark: str, stat: str = "accuracy") -> str:
    """Summary key of a test benchmark's statistic: ``test/<benchmark>/<stat>`` (accuracy, ci_low, ci_high, ...)."""
    return f"test/{benchmark}/{stat}"


def cell_run_id(cell_key: str) -> str:
    """The W&B run id of a cell: one run per cell key, whichever table ran it first.

    >>> cell_run_id("0123456789abcdef")
    'cell-0123456789abcdef'
    """
    return f"cell-{cell_key}"


def table_key(cell_keys: list[str]) -> str:
    """A digest of a table's planned cell keys (other overrides, other cells: another key)."""
    from cft_lab.pipeline.store import digest

    return digest(list(cell_keys), 12)


def table_run_id(table: str, cell_keys: list[str]) -> str:
    """The W&B run id of a table's run: the table's name and :func:`table_key` (W&B run ids allow letters, digits,
    ``-`` and ``_``).

    >>> table_run_id("table2_tiny", ["a", "b"]) == f"table-table2_tiny-{table_key(['a', 'b'])}"
    True
    """
    return f"table-{re.sub(r'[^A-Za-z0-9_-]', '-', table)}-{table_key(cell_keys)}"


def wandb_dir(cfg, outputs: Path) -> Path:
    """Where W&B writes (``logger.dir``, default ``<outputs>/wandb``); offline runs land in its ``wandb/`` folder as
    ``offline-run-<YYYYmmdd_HHMMSS>-<run id>/run-<run id>.wandb``."""
    return Path(cfg.dir) if cfg.dir else Path(outputs) / "wandb"


class Logger(Protocol):
    def log(self, metrics: dict, step: int | None = None) -> None: ...
    def summary(self, metrics: dict) -> None: ...
    def log_table(self, name: str, frame, image: Path | None = None) -> None: ...
    def log_image(self, name: str, path: Path) -> None: ...
    def finish(self, failed: bool = False) -> None: ...


class NoOpLogger:
    def log(self, metrics: dict, step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def log_table(self, name: str, frame, image: Path | None = None) -> None:
        pass

    def log_image(self, name: str, path: Path) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass


class WandbLogger:
    def __init__(
        self,
        cfg,
        name: str,
        group: str | None,
        config: dict,
        outputs: Path,
        job_type: str = "cell",
        run_id: str | None = None,
    ):
        import wandb

        wdir = wandb_dir(cfg, outputs)
        wdir.mkdir(parents=True, exist_ok=True)
        for var, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
            os.environ.setdefault(var, str(wdir / f".{sub}"))  # keep W&B out of the home directory
        self._wandb = wandb
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            mode=cfg.mode,
            id=run_id,
            resume="allow" if run_id else None,
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
        """A frame as a W&B Table (a labelled index becomes columns; a plain range index is dropped; NaN -> None),
        and ``image`` beside it as ``<name>_plot``."""
        labelled = any(n is not None for n in frame.index.names)
        flat = frame.reset_index() if labelled else frame
        table = self._wandb.Table(
            columns=[str(c) for c in flat.columns],
            data=[[None if v != v else _plain(v) for v in row] for row in flat.itertuples(index=False)],
        )
        payload: dict[str, Any] = {name: table}
        if image is not None and image.is_file():
            payload[f"{name}_plot"] = self._wandb.Image(str(image))
        self.run.log(payload)

    def log_image(self, name: str, path: Path) -> None:
        self.run.log({name: self._wandb.Image(str(path))})

    def finish(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones (W&B Tables type-check their cells)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def make_logger(
    cfg, name: str, group: str | None, config: dict, outputs: Path, job_type: str = "cell", run_id: str | None = None
) -> Logger:
    if cfg.name == "none" or cfg.mode == "disabled":
        return NoOpLogger()
    if cfg.name == "wandb":
        os.environ.setdefault("WANDB_SILENT", "true")
        return WandbLogger(cfg, name, group, config, outputs, job_type, run_id)
    raise ValueError(f"logger={cfg.name} is unknown; choose none or wandb")
