"""Hydra callback: when a table sweep ends, render its table from the run store (and print the plan on dry runs).

Registered in ``conf/config.yaml`` under ``hydra.callbacks`` (Hydra instantiates callbacks by ``_target_``; this is the
one place cft-lab uses it). It runs in the launching process after every job has returned, so with the basic
launcher and with SLURM alike the table is rendered once, from whatever cells finished or failed.
"""

from __future__ import annotations

import logging

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class RenderTable(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        table = config.hydra.runtime.choices.get("table")
        if not table or table == "null":
            return
        overrides = list(config.hydra.overrides.task)
        from cft_lab.report import tables

        if config.get("dry_run"):
            print("\n" + tables.plan_text(table, overrides, show_config=True), flush=True)
            return
        try:
            result = tables.render(table, overrides)
        except Exception:  # the cells are safe in the store; a rendering bug must not hide that
            log.exception("rendering %s failed; rerun `python -m cft_lab.report.tables %s`", table, table)
            return
        log.info("table %s written: %s", table, ", ".join(str(p) for p in result["paths"].values()))
        try:
            _log_table(config, table, result)
        except Exception as e:  # the files are written; a tracker failure is only a warning
            log.warning("logging table %s to the tracker failed: %s", table, e)


def _log_table(config: DictConfig, table: str, result: dict) -> None:
    from pathlib import Path

    from cft_lab.report.tracking import make_logger

    cfg = result["configs"][0]
    logger = make_logger(
        cfg.logger,
        name=table,
        group=cfg.run.table,
        config={"table": table},
        outputs=Path(cfg.paths.outputs).resolve(),
        job_type="table",
    )
    try:
        logger.log_table(table, result["frame"], image=result["paths"].get("png"))
    finally:
        logger.finish()
