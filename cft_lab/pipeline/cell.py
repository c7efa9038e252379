"""One cell, end to end: data -> train -> select -> infer -> grade, with caching and failure recording.

``run_cell(cfg)`` never raises for a failing stage (unless ``run.strict=true``): the failure is written to
``store/cells/<key>/result.json`` with its error and traceback, and a sweep goes on to the next cell; the rendered
table marks the hole and says why (docs/pitfalls.md#orchestration: one failed job must not stop ``make tableN``).

``result.json``::

    {"status": "ok" | "failed", "cell": "tiny_math/cft", "key": "...", "table": "table2", "method": "cft",
     "model": "tiny-math (≈Qwen2.5-Math-7B)", "objective": "cft", "teacher": "testbed-strong (≈GPT-4o-1120)",
     "scores": {"testbed_2step": {"label": "2-step", "correct": 120, "n": 200, "accuracy": 60.0,
                                   "ci_low": 53.1, "ci_high": 66.5}, ...},
     "stages": {"data": "<key>", ...}, "timings_s": {"data": 0.4, ...}, "error": null,
     "data_card": {...}, "train_examples": {"pairs": 2000, "truncated": 0, "dropped": 0, ...}, "selected": "..."}
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from cft_lab.config import Config, as_dict
from cft_lab.options import Stage
from cft_lab.pipeline.plan import CellPlan, format_plan, plan_cell
from cft_lab.pipeline.preflight import preflight, teacher_estimate
from cft_lab.pipeline.store import Store
from cft_lab.report.tracking import Logger, NoOpLogger, make_logger, sanitize
from cft_lab.train.modeling import model_path
from cft_lab.train.objectives import OBJECTIVES

log = logging.getLogger(__name__)


def _identity(cfg: Config, plan: CellPlan) -> dict:
    uses_teacher = OBJECTIVES[cfg.objective.name].teacher_work is not None
    return {
        "cell": plan.name,
        "key": plan.key,
        "table": cfg.run.table,
        "method": cfg.run.method or cfg.objective.name,
        "model": cfg.model.label,
        "model_name": cfg.model.name,
        "objective": cfg.objective.name,
        "teacher": (cfg.teacher.label or cfg.teacher.name) if uses_teacher else None,
        "stages": {s.stage: s.key for s in plan.stages},
    }


def execute(cfg: Config, plan: CellPlan, store: Store, logger) -> dict:
    """Run the cell's stages in order; each returns a small typed result, from which the cell's result is built."""
    from cft_lab.data.stage import run_data
    from cft_lab.eval.stage import run_grade, run_infer, run_select
    from cft_lab.train.stage import run_train

    timings: dict[str, float] = {}

    def timed(stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.time()
        log.info("[%s] %s ...", plan.name, stage)
        out = fn(cfg, store, plan.key_of(stage), *args)
        timings[stage] = round(time.time() - t0, 2)
        return out

    preflight(cfg)
    extra: dict = {}
    stop = cfg.run.stop_after

    def stopped(stage: Stage, path: Any) -> dict | None:  # run.stop_after: the artefact so far, no scores
        if stop != stage:
            return None
        return {"stopped_after": str(stage), str(stage): store.relative(path), "timings_s": timings}

    if not OBJECTIVES[cfg.objective.name].trains:
        evaluated = model_path(cfg.model)
    else:
        data = timed("data", run_data)
        if early := stopped(Stage.data, data.path):
            return {**early, "data_card": data.card}
        train = timed("train", run_train, data.path, logger)
        if early := stopped(Stage.train, train.path):
            return early
        sel = timed("select", run_select, train.path, logger)
        if early := stopped(Stage.select, sel.model_dir):
            return early
        evaluated = str(sel.model_dir)
        extra["selected"] = store.relative(sel.model_dir)  # relative to the store: portable across mounts
        extra["selection"] = sel.summary()
        selection = sel.selection
        logger.summary(
            {
                "select/selected_step": selection["selected"]["step"],
                "select/selected_accuracy": selection["selected"]["accuracy"],
                "select/last_step": selection["last"]["step"],
                "select/last_accuracy": selection["last"]["accuracy"],
                **{f"select/overlap/{b}": n for b, n in selection["validation_test_overlap"].items()},
            }
        )
        extra["data_card"] = data.card
        extra["train_examples"] = train.pairs  # truncated / dropped per arm
    infer_dir = timed("infer", run_infer, evaluated)
    if early := stopped(Stage.infer, infer_dir):
        return early
    grade = timed("grade", run_grade, infer_dir)
    for name, s in grade.scores.items():
        stats = s.get("inference", {})
        logger.summary(
            {
                f"test/{name}/{k}": stats[k]
                for k in ("tokens_per_item", "mean_rounds", "self_verdict_accuracy")
                if k in stats
            }
        )
        logger.summary(
            {
                f"test/{name}/accuracy": s["accuracy"],
                f"test/{name}/ci_low": s["ci_low"],
                f"test/{name}/ci_high": s["ci_high"],
                **{f"test/{name}/{m}": a for m, a in s.get("modes", {}).items()},
                f"test/{name}/disagreements": s.get("disagreements", 0),
            }
        )
    if grade.critique is not None:
        extra["critique"] = grade.critique
        logger.summary({f"critique/{k}": v for k, v in grade.critique.items() if isinstance(v, (int, float))})
    return {"scores": grade.scores, "timings_s": timings, **extra}


def dry_run(cfg: Config, plan: CellPlan, store: Store, ident: dict) -> dict:
    """Print the plan, then run every check the run would run first (and the teacher's cost estimate): a refusal
    here is the refusal the run would meet, and the cell counts as failed."""
    print(format_plan(plan), flush=True)
    from cft_lab.pipeline.preflight import EstimateUnavailable

    try:
        preflight(cfg)
        est = teacher_estimate(cfg, store.root)
    except EstimateUnavailable as e:
        print(f"  buys   {e}", flush=True)
        return {"status": "planned", **ident}
    except Exception as e:
        print(f"  refused: {e}", flush=True)
        return {"status": "failed", **ident, "error": f"{type(e).__name__}: {e}", "dry_run": True}
    if est is not None:
        print(f"  buys   {est.line()}", flush=True)
    return {"status": "planned", **ident}


def run_cell(cfg: Config) -> dict:
    """Run (or plan, with ``dry_run``) one cell; returns its result (``status``: ok, failed, planned, stopped)."""
    plan = plan_cell(cfg)
    store = Store(cfg.paths.outputs)
    ident = _identity(cfg, plan)
    if cfg.dry_run:
        return dry_run(cfg, plan, store, ident)
    cached = store.cell_result(plan.key)
    if cached and cached.get("status") == "ok":
        log.info("[%s] finished before (cell %s): nothing to do", plan.name, plan.key)
        return cached
    logger: Logger = NoOpLogger()
    failed = True
    t0 = time.time()
    try:
        logger = make_logger(
            cfg.logger,
            name=plan.name,
            group=cfg.run.table,
            outputs=store.root.parent,
            config=sanitize({**as_dict(cfg), "cell_key": plan.key, "stage_keys": ident["stages"]}),
        )
        result = {"status": "ok", **ident, **execute(cfg, plan, store, logger), "error": None}
        failed = False
    except Exception as e:  # a failing cell is recorded, not fatal
        if cfg.run.strict:
            raise
        log.error("[%s] failed: %s: %s", plan.name, type(e).__name__, e)
        result = {
            "status": "failed",
            **ident,
            "scores": {},
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc(),
        }
    finally:
        try:
            logger.finish(failed=failed)
        except Exception as e:  # a tracker hiccup must not lose the cell's result
            log.warning("[%s] logger.finish failed: %s", plan.name, e)
    result["wall_s"] = round(time.time() - t0, 2)
    if result["status"] == "ok" and "stopped_after" in result:
        # a partial cell: its artefacts are in the store, but it has no scores, so no result.json (a later full
        # run must not find it "finished before")
        log.info("[%s] stopped after %s: %s", plan.name, cfg.run.stop_after, result.get("data"))
        return {**result, "status": "stopped"}
    store.write_cell_result(plan.key, result)
    return result
