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
     "data_card": {...}, "train_examples": {"pairs": 2000, "truncated": 0, "dropped": 0, ...}, "selected": "...",
     "compute": {"loss_tokens": ..., "attended_tokens": ..., "optimizer_steps": 125, "flops": ..., "train_wall_s": ...},
     "answer_format": {"share": 99.5, "parseable": 796, "n": 800, "by_benchmark": {...}}}

``compute`` (``cft_lab.train.compute``) is what the arm's training cost; ``answer_format`` is the share of test outputs
whose final answer the table's grader could extract (did training keep the base's answer format?). Both go to the
cell's W&B summary too (``compute/*``, ``test/parseable_share``).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from cft_lab.config import Config, as_dict, own_data_config, parent_config, part_config, uses_pool
from cft_lab.eval import benchmarks
from cft_lab.options import Stage
from cft_lab.pipeline.plan import CellPlan, format_plan, plan_cell, stage_label
from cft_lab.pipeline.preflight import preflight, teacher_estimates
from cft_lab.pipeline.store import Store, read_jsonl
from cft_lab.report import tracking
from cft_lab.report.tracking import Logger, NoOpLogger, make_logger, sanitize
from cft_lab.train.modeling import model_path
from cft_lab.train.objectives import spec

log = logging.getLogger(__name__)


def _identity(cfg: Config, plan: CellPlan) -> dict:
    uses_teacher = spec(cfg.objective).teacher_work is not None
    return {
        "cell": plan.name,
        "key": plan.key,
        "table": cfg.run.table,
        "method": cfg.run.method or cfg.objective.name,
        "model": cfg.model.label,
        "model_name": cfg.model.name,
        "objective": cfg.objective.name,
        "teacher": (cfg.teacher.label or cfg.teacher.name) if uses_teacher else None,
        "stages": {stage_label(s): s.key for s in plan.stages},
    }


def _view_config(cfg: Config, plan: CellPlan) -> dict:
    """Flat config keys the dashboard's view filters and labels runs by (``config:<key>`` columns): the cell key and
    the paper's labels of the cell's row."""
    uses_teacher = spec(cfg.objective).teacher_work is not None
    return {
        "cell_key": plan.key,
        "model_label": cfg.model.label,
        "method_label": cfg.run.label or cfg.objective.label,
        "teacher_label": (cfg.teacher.label or cfg.teacher.name) if uses_teacher else None,
        "decoding": cfg.run.variant or str(cfg.inference.mode),
    }


def execute(cfg: Config, plan: CellPlan, store: Store, logger) -> dict:
    """Run the cell's stages in order; each returns a small typed result, from which the cell's result is built."""
    from cft_lab.eval.stage import run_infer

    timings: dict[str, float] = {}

    def timed(stage: str, fn: Callable[..., Any], stage_cfg: Config, key: str | dict[str, str], *args: Any) -> Any:
        """Run one stage (of this cell, a mixture part or a chain's parent) and add its time to the stage's."""
        t0 = time.time()
        log.info("[%s] %s %s ...", plan.name, stage, key)
        out = fn(stage_cfg, store, key, *args)
        timings[stage] = round(timings.get(stage, 0.0) + time.time() - t0, 2)
        return out

    preflight(cfg, store)
    extra: dict = {}
    stop = cfg.run.stop_after

    def stopped(stage: Stage, path: Any) -> dict | None:  # run.stop_after: the artefact so far, no scores
        if stop != stage:
            return None
        return {"stopped_after": str(stage), str(stage): store.relative(path), "timings_s": timings}

    if not spec(cfg.objective).trains:
        evaluated = model_path(cfg.model)
    else:
        data, train, sel = _train_and_select(cfg, plan, store, logger, timed, stop=stop)
        if early := stopped(Stage.data, data[0].path):
            return {**early, "data_card": data[0].card if len(data) == 1 else [d.card for d in data]}
        if early := stopped(Stage.train, train.path):
            return early
        if early := stopped(Stage.select, sel.model_dir):
            return early
        evaluated = str(sel.model_dir)
        extra["selected"] = store.relative(sel.model_dir)  # relative to the store: portable across mounts
        selection = sel.selection
        # counted for this cell's benchmarks (a selection a tuning trial made counted none)
        overlap = {b: benchmarks.overlap(selection["benchmark"], b) for b in cfg.eval.benchmarks}
        extra["selection"] = {**sel.summary(), "validation_test_overlap": overlap}
        _log_selection(logger, selection)
        logger.summary(
            {
                "select/selected_step": selection["selected"]["step"],
                "select/selected_accuracy": selection["selected"]["accuracy"],
                "select/last_step": selection["last"]["step"],
                "select/last_accuracy": selection["last"]["accuracy"],
                **{f"select/overlap/{b}": n for b, n in overlap.items()},
            }
        )
        extra["data_card"] = data[0].card if len(data) == 1 else {f"part {k}": d.card for k, d in enumerate(data)}
        extra["train_examples"] = train.pairs  # truncated / dropped per arm (per part for a mixture)
        extra["compute"] = train.compute  # tokens, steps, FLOPs estimate, wall time (cft_lab.train.compute)
        if train.compute:
            logger.summary({f"compute/{k}": v for k, v in train.compute.items() if isinstance(v, (int, float))})
    keys = plan.infer_keys()
    if stop == Stage.infer:
        paths = timed("infer", run_infer, cfg, keys, evaluated)
        infer = {b: store.relative(p) for b, p in paths.items()}
        return {"stopped_after": "infer", "infer": infer, "timings_s": timings}
    grade = _infer_and_grade(cfg, plan, store, timed, keys, evaluated)
    for name, s in grade.scores.items():
        stats = s.get("inference", {})
        logger.summary(
            {
                tracking.score_key(name, k): stats[k]
                for k in ("tokens_per_item", "mean_rounds", "self_verdict_accuracy")
                if k in stats
            }
        )
        logger.summary(
            {
                tracking.score_key(name): s["accuracy"],
                tracking.score_key(name, "ci_low"): s["ci_low"],
                tracking.score_key(name, "ci_high"): s["ci_high"],
                **{tracking.score_key(name, m): a for m, a in s.get("modes", {}).items()},
                tracking.score_key(name, "disagreements"): s.get("disagreements", 0),
            }
        )
    accuracies = [s["accuracy"] for s in grade.scores.values()]
    if accuracies:
        logger.summary({tracking.TEST_AVG: sum(accuracies) / len(accuracies)})
    from cft_lab.report.items import items_frame

    logger.log_table(tracking.ITEMS_TABLE, items_frame(grade.path, list(grade.scores)))
    extra["answer_format"] = answer_format(grade.path, grade.scores)
    logger.summary({"test/parseable_share": extra["answer_format"]["share"]})
    if grade.critique is not None:
        extra["critique"] = grade.critique
        logger.summary({f"critique/{k}": v for k, v in grade.critique.items() if isinstance(v, (int, float))})
    return {"scores": grade.scores, "timings_s": timings, **extra}


def answer_format(grade_dir: Path, scores: dict) -> dict:
    """How many test outputs keep the base's answer format: the share (percent) whose table-mode extraction found a
    final answer (the testbed: a boxed integer), overall and per benchmark, first sample of each item."""
    per: dict[str, dict] = {}
    for name, s in scores.items():
        mode = s.get("mode", "testbed")
        rows = list(read_jsonl(grade_dir / f"{name}.jsonl"))
        found = sum(bool(str(r["samples"][0].get("pred", {}).get(mode) or "").strip()) for r in rows)
        per[name] = {"parseable": found, "n": len(rows), "share": round(100.0 * found / max(len(rows), 1), 2)}
    total, n = sum(p["parseable"] for p in per.values()), sum(p["n"] for p in per.values())
    return {"share": round(100.0 * total / max(n, 1), 2), "parseable": total, "n": n, "by_benchmark": per}


def _infer_and_grade(cfg: Config, plan: CellPlan, store: Store, timed, keys: dict[str, str], evaluated: str):
    """Generate every benchmark (the infer stage, in this thread: it holds the engine) and grade each one as soon as
    its generations are complete (the grade stage, in a second thread whose grading runs in worker processes), so
    grading a benchmark overlaps generating the next. An error in generation stops the grading after the benchmarks
    already generated; the generation error is the one raised."""
    import queue
    from concurrent.futures import ThreadPoolExecutor

    from cft_lab.eval.stage import run_grade, run_infer

    ready: queue.Queue = queue.Queue()
    dirs = {name: store.path("infer", key) for name, key in keys.items()}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="grade") as pool:
        grading = pool.submit(timed, "grade", run_grade, cfg, plan.key_of("grade"), dirs, iter(ready.get, None))
        try:
            timed("infer", run_infer, cfg, keys, evaluated, ready.put)
        except BaseException:
            ready.put(None)
            grading.exception()  # wait for the grader to stop (its "stopped early" error is a consequence)
            raise
        ready.put(None)
        return grading.result()


def _train_and_select(
    cfg: Config, plan: CellPlan, store: Store, logger, timed, role: Optional[str] = None, stop: Optional[Stage] = None
):
    """The data (one artefact, or one per mixture part), train and select stages of a training cell, a chain's
    parent's first; returns (data results, train result, select result). ``stop=data`` builds the data artefacts
    only (the parent's too) and returns no train or select result."""
    from cft_lab.data.stage import run_data
    from cft_lab.eval.stage import run_select
    from cft_lab.train.stage import TrainPart, run_train

    base = None
    if cfg.chain is not None:  # the parent cell's stages (found in the store when another table built them)
        _, _, parent = _train_and_select(parent_config(cfg), plan, store, NoOpLogger(), timed, "parent", stop)
        base = None if parent is None else str(parent.model_dir)
    prefix = f"{role} " if role else ""
    if spec(cfg.objective).family == "mix":
        parts = cfg.objective.parts or []
        data = [
            timed("data", run_data, part_config(cfg, p), plan.key_of("data", f"{prefix}part {k}"))
            for k, p in enumerate(parts)
        ]
        train_parts = [
            TrainPart(part_config(cfg, p).objective, d.path, p.count, p.fraction, name=f"part {k} ({p.objective})")
            for k, (p, d) in enumerate(zip(parts, data))
        ]
    else:
        data = [timed("data", run_data, own_data_config(cfg), plan.key_of("data", role))]
        # objective.pool: data.pool_sample of the pool's pairs (own_data_config has refused a pool without one)
        train_parts = [TrainPart(cfg.objective, data[0].path, cfg.data.pool_sample if uses_pool(cfg) else None)]
    if stop == Stage.data:
        return data, None, None
    train = timed("train", run_train, cfg, plan.key_of("train", role), train_parts, logger, base)
    sel = timed("select", run_select, cfg, plan.key_of("select", role), train.path)
    return data, train, sel


def _log_selection(logger: Logger, selection: dict) -> None:
    """The selection curve (validation accuracy per checkpoint) from ``selection.json``, so a cell whose selection
    was found in the store logs it too, then the selected checkpoint as one point of its own series (the view marks
    it on the curve)."""
    bench = selection["benchmark"]
    for c in selection["checkpoints"]:
        if c["accuracy"] is not None:  # strategy "last" scores nothing
            logger.log({tracking.SELECT_STEP: c["step"], tracking.select_key(bench): c["accuracy"]})
    chosen = selection["selected"]
    if chosen["accuracy"] is not None:
        logger.log({tracking.SELECT_STEP: chosen["step"], tracking.SELECTED: chosen["accuracy"]})


def dry_run(cfg: Config, plan: CellPlan, store: Store, ident: dict) -> dict:
    """Print the plan, then run every check the run would run first (and the teacher's cost estimate): a refusal
    here is the refusal the run would meet, and the cell counts as failed."""
    print(format_plan(plan), flush=True)
    from cft_lab.pipeline.estimate import estimate_cell
    from cft_lab.pipeline.preflight import EstimateUnavailable, PreflightError

    est = estimate_cell(cfg, plan, store)
    print(
        f"  needs  {est.line()}\n         (assumed: {'; '.join(est.assumptions)}; cluster={cfg.cluster.name})",
        flush=True,
    )
    refused: list[str] = []
    try:
        preflight(cfg, store, dry_run=True)
    except PreflightError as e:
        refused += e.problems
    try:  # what the data stage would buy, also when something else is refused (a budget is one more refusal)
        for role, bought in teacher_estimates(cfg, store.root):
            print(f"  buys   {f'({role}) ' if role else ''}{bought.line()}", flush=True)
    except EstimateUnavailable as e:
        print(f"  buys   {e}", flush=True)
    except Exception as e:
        if not any(str(e) in r or r in str(e) for r in refused):  # the same bad source, already said
            refused.append(str(e))
    for problem in refused:
        print(f"  refused: {problem}", flush=True)
    if refused:
        error = "PreflightError: " + "; ".join(refused)
        return {"status": "failed", **ident, "error": error, "dry_run": True}
    return {"status": "planned", **ident, "estimate": _estimate_dict(est)}


def _estimate_dict(est) -> dict:
    return {"gpus": est.gpus, "gpu_hours": est.gpu_hours, "wall_hours": est.wall_hours,
            "disk_peak_gb": est.disk_peak_gb, "disk_kept_gb": est.disk_kept_gb}  # fmt: skip


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
            config=sanitize({**as_dict(cfg), **_view_config(cfg, plan), "stage_keys": ident["stages"]}),
            run_id=tracking.cell_run_id(plan.key),
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
