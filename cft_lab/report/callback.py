"""Hydra callback: when a table sweep ends, render its table from the run store (and print the plan on dry runs),
then write the table's view (``cft_lab.report.dashboard``: per-item Parquet files, the picture, the specification,
and the table's W&B run with the rendered table and the comparison tables).

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
        if "trials" in result:  # a tuning sweep has no test cells to view
            return
        try:
            from cft_lab.report import dashboard

            spec = dashboard.build(table, overrides, rendered=result)
            log.info("view of %s written: %s (python -m cft_lab dashboard %s)", table, spec["files"]["picture"], table)
        except Exception as e:  # the table is written; a view or tracker failure is only a warning
            log.warning("writing the view of table %s failed: %s: %s", table, type(e).__name__, e, exc_info=True)
