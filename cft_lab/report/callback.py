"""Hydra callback: when a sweep ends, render its table from the run store (and print the plan on dry runs), write the
table's view (``cft_lab.report.dashboard``: per-item Parquet files, the picture, the specification, and the table's
W&B run with the rendered table and the comparison tables), then collect the cells that failed, so that the
entrypoint exits non-zero after the table is rendered.

Registered in ``conf/config.yaml`` under ``hydra.callbacks`` (Hydra instantiates callbacks by ``_target_``; this is the
one place cft-lab uses it). It runs in the launching process after every job has returned, so with the basic
launcher and with SLURM alike the table is rendered once, from whatever cells finished or failed.

Failures are read from files, not from the jobs' return values (which a remote launcher does not bring back): each
job writes its outcome to ``cell.json`` in its own Hydra output folder (``cft_lab.app``), and a table's cells are read
from the store (a cell that never wrote a result, e.g. a killed SLURM job, counts as failed). They are appended to
:data:`FAILED`, which ``cft_lab.app.main`` checks after the sweep.
"""

from __future__ import annotations

import logging

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

#: Outcomes ({"status", "cell", "key", "error"}) of the cells of this process's run or sweep that failed.
FAILED: list[dict] = []


class RenderTable(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        failed = {f["key"]: f for f in _job_outcomes(config) if f.get("status") == "failed"}
        try:
            self._render(config, failed)
        finally:
            FAILED.extend(failed.values())
            if failed:
                log.error(
                    "%d cell(s) failed: %s",
                    len(failed),
                    "; ".join(f"{f['cell']}: {f['error']}" for f in failed.values()),
                )

    def _render(self, config: DictConfig, failed: dict) -> None:
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
        except Exception as e:  # the cells are safe in the store; a rendering bug must not hide that
            log.exception("rendering %s failed; rerun `python -m cft_lab.report.tables %s`", table, table)
            failed["<table>"] = {"status": "failed", "cell": f"table {table}", "key": None, "error": str(e)}
            return
        for cell in result.get("cells", []):  # the store's view: a job that died before writing a result is a hole
            if cell.status != "ok":
                failed.setdefault(cell.key, {"status": "failed", "cell": f"{cell.model}/{cell.method}",
                                             "key": cell.key, "error": cell.error})  # fmt: skip
        log.info("table %s written: %s", table, ", ".join(str(p) for p in result["paths"].values()))
        # a tuning sweep (validation trials only), a figure or a table of datasets (Figure 2, Table 1): no view
        if "trials" in result or result.get("view") is False:
            return
        try:
            from cft_lab.report import dashboard

            spec = dashboard.build(table, overrides, rendered=result)
            log.info("view of %s written: %s (python -m cft_lab dashboard %s)", table, spec["files"]["picture"], table)
        except Exception as e:  # the table is written; a view or tracker failure is only a warning
            log.warning("writing the view of table %s failed: %s: %s", table, type(e).__name__, e, exc_info=True)


def _job_outcomes(config: DictConfig) -> list[dict]:
    """The ``cell.json`` every job of this sweep wrote into its own output folder."""
    import json
    from pathlib import Path

    out = []
    for path in sorted(Path(config.hydra.sweep.dir).glob("*/cell.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            out.append({"status": "failed", "cell": str(path.parent), "key": str(path), "error": f"unreadable: {e}"})
    return out
