"""Tuning trials: one (model, arm, hyper-parameters) point of a sweep, scored on the validation split only.

``run.tune=true`` turns a cell into a trial: the data, train and select stages run (or are found in the store) and
the trial's score is the validation accuracy of the checkpoint selection keeps (``eval.select.benchmark``; the
testbed's ``testbed_val``), the same number that picks the checkpoint of a table cell. No test benchmark is
generated, graded or even loaded: the whole trial runs inside ``cft_lab.eval.benchmarks.forbid_test_splits``, and
``run.tune`` with a test set as the selection benchmark is refused at compose time.

A trial's key is its selection key (``cft_lab.pipeline.plan``): the trial and a table cell with the same
hyper-parameters share their data, train and select artefacts, so the chosen point's table cell trains nothing new.
The trial's result is ``store/trials/<key>/result.json``::

    {"status": "ok" | "failed", "trial": "<select key>", "cell": "tiny_math/cft", "model_name": "tiny_math",
     "objective": "cft", "method": "cft", "params": {"learning_rate": 1e-4, "num_train_epochs": 2.0, ...},
     "validation": {"benchmark": "testbed_val", "accuracy": 61.5, "step": 250, "last_accuracy": 60.0},
     "compute": {...}, "timings_s": {...}, "error": null}

``cft_lab.report.tuning`` reads the trials of a sweep, chooses per (model, arm) and writes the values the tables read.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from cft_lab.config import Config, as_dict
from cft_lab.pipeline.plan import CellPlan, plan_cell
from cft_lab.pipeline.store import Store, write_json
from cft_lab.report.tracking import NoOpLogger
from cft_lab.train.objectives import spec

log = logging.getLogger(__name__)

#: The hyper-parameters a trial reports (``train.<name>``); a sweep varies some of them.
PARAMS = ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "warmup_ratio", "lr_scheduler_type")


def trial_key(plan: CellPlan) -> str:
    return plan.key_of("select")


def read_trial(store: Store, key: str) -> dict | None:
    import json

    path = store.path("trials", key) / "result.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def run_trial(cfg: Config) -> dict:
    """Run one trial (see the module doc); a failure is recorded, not raised (unless ``run.strict``)."""
    from cft_lab.eval.benchmarks import forbid_test_splits
    from cft_lab.pipeline.cell import _train_and_select

    if not spec(cfg.objective).trains:
        raise ValueError(f"objective={cfg.objective.name} trains nothing: there is nothing to tune")
    plan = plan_cell(cfg)
    key = trial_key(plan)
    store = Store(cfg.paths.outputs)
    ident: dict[str, Any] = {
        "trial": key,
        "cell": plan.name,
        "model_name": cfg.model.name,
        "model": cfg.model.label,
        "objective": cfg.objective.name,
        "method": cfg.run.method or cfg.objective.name,
        "table": cfg.run.table,
        "params": {p: as_dict(cfg.train)[p] for p in PARAMS},
        "seed": cfg.train.seed,
    }
    if cfg.dry_run:  # refuses what the trial would refuse (preflight), like a cell's dry run
        from cft_lab.pipeline.preflight import problems

        print(f"trial {plan.name} {ident['params']}  [{key}]", flush=True)
        refused = problems(cfg, store, dry_run=True)
        for problem in refused:
            print(f"  refused: {problem}", flush=True)
        if refused:
            return {"status": "failed", **ident, "error": "PreflightError: " + "; ".join(refused)}
        return {"status": "planned", **ident}
    cached = read_trial(store, key)
    if cached and cached.get("status") == "ok":
        log.info("[%s] trial %s finished before: %.1f", plan.name, key, cached["validation"]["accuracy"])
        return cached
    timings: dict[str, float] = {}

    def timed(stage, fn, stage_cfg, stage_key, *args):
        t0 = time.time()
        out = fn(stage_cfg, store, stage_key, *args)
        timings[stage] = round(timings.get(stage, 0.0) + time.time() - t0, 2)
        return out

    t0 = time.time()
    try:
        from cft_lab.pipeline.preflight import preflight

        preflight(cfg, store)  # what the trial cannot finish is refused before it trains, as for a cell
        with forbid_test_splits(f"tuning trial {plan.name} ({key})"):
            _, train, sel = _train_and_select(cfg, plan, store, NoOpLogger(), timed)
        chosen, last = sel.selection["selected"], sel.selection["last"]
        result = {
            "status": "ok",
            **ident,
            "validation": {
                "benchmark": sel.selection["benchmark"],
                "accuracy": chosen["accuracy"],
                "step": chosen["step"],
                "last_step": last["step"],
                "last_accuracy": last["accuracy"],
                "curve": [[c["step"], c["accuracy"]] for c in sel.selection["checkpoints"]],
            },
            "compute": train.compute,
            "timings_s": timings,
            "error": None,
        }
        log.info(
            "[%s] trial %s: validation %.1f at step %d", plan.name, ident["params"], chosen["accuracy"], chosen["step"]
        )
    except Exception as e:
        if cfg.run.strict:
            raise
        log.error("[%s] trial failed: %s: %s", plan.name, type(e).__name__, e)
        result = {"status": "failed", **ident, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    result["wall_s"] = round(time.time() - t0, 2)
    write_json(store.path("trials", key) / "result.json", result)
    return result
