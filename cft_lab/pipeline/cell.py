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

from cft_lab.config import Config, as_dict, parent_config, part_config
from cft_lab.eval import benchmarks
from cft_lab.pipeline.plan import CellPlan, format_plan, plan_cell
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
        "stages": {(f"{s.role}:{s.stage}" if s.role else s.stage): s.key for s in plan.stages},
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


def preflight(cfg: Config) -> None:
    """Refuse, before any data is built or model trained, what this build cannot finish: an unknown benchmark, a
    generation backend that is not installed, grading modes whose libraries are missing."""
    from cft_lab.eval import benchmarks
    from cft_lab.eval.generation import check_backend

    check_backend(cfg.inference)
    for b in [*cfg.eval.benchmarks, cfg.eval.select.benchmark]:
        benchmarks.get(b)  # raises with the known names
    if cfg.eval.critique.enabled and cfg.eval.critique.benchmark not in benchmarks.TESTBED_SPECS:
        raise ValueError(
            f"eval.critique.benchmark={cfg.eval.critique.benchmark}: the critique probe needs a testbed "
            f"benchmark ({', '.join(benchmarks.TESTBED_SPECS)}), whose responses' correctness is known"
        )
    if "math_verify" in cfg.eval.modes:
        import importlib.util

        if importlib.util.find_spec("math_verify") is None:
            raise ImportError(
                "eval.modes includes math_verify but the math-verify package is not installed: "
                "pip install 'math-verify[antlr4_9_3]' or drop the mode (eval.modes=[paper,strict])"
            )


def execute(cfg: Config, plan: CellPlan, store: Store, logger) -> dict:
    """Run the cell's stages in order; each returns a small typed result, from which the cell's result is built."""
    from cft_lab.eval.stage import run_grade, run_infer

    timings: dict[str, float] = {}

    def timed(stage: str, fn: Callable[..., Any], stage_cfg: Config, key: str, *args: Any) -> Any:
        """Run one stage (of this cell, a mixture part or a chain's parent) and add its time to the stage's."""
        t0 = time.time()
        log.info("[%s] %s %s ...", plan.name, stage, key)
        out = fn(stage_cfg, store, key, *args)
        timings[stage] = round(timings.get(stage, 0.0) + time.time() - t0, 2)
        return out

    preflight(cfg)
    extra: dict = {}
    if not spec(cfg.objective).trains:
        evaluated = model_path(cfg.model)
    else:
        data, train, sel = _train_and_select(cfg, plan, store, logger, timed)
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
    infer_dir = timed("infer", run_infer, cfg, plan.key_of("infer"), evaluated)
    grade = timed("grade", run_grade, cfg, plan.key_of("grade"), infer_dir)
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


def _train_and_select(cfg: Config, plan: CellPlan, store: Store, logger, timed, role: Optional[str] = None):
    """The data (one artefact, or one per mixture part), train and select stages of a training cell, a chain's
    parent's first; returns (data results, train result, select result)."""
    from cft_lab.data.stage import run_data
    from cft_lab.eval.stage import run_select
    from cft_lab.train.stage import TrainPart, run_train

    base = None
    if cfg.chain is not None:  # the parent cell's stages (found in the store when another table built them)
        _, _, parent = _train_and_select(parent_config(cfg), plan, store, NoOpLogger(), timed, role="parent")
        base = str(parent.model_dir)
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
        data = [timed("data", run_data, cfg, plan.key_of("data", role))]
        train_parts = [TrainPart(cfg.objective, data[0].path)]
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


def run_cell(cfg: Config) -> dict:
    plan = plan_cell(cfg)
    store = Store(cfg.paths.outputs)
    ident = _identity(cfg, plan)
    if cfg.dry_run:
        print(format_plan(plan), flush=True)
        return {"status": "planned", **ident}
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
    store.write_cell_result(plan.key, result)
    return result
