"""Per-benchmark inference artefacts: a benchmark's generations are keyed by the model, the decoding and that
benchmark alone, so an eval set that lists it again finds them; grading a benchmark starts as soon as its generations
are complete, while the next benchmark generates (issue 13, item 4 and item 9)."""

from __future__ import annotations

import json

from cft_lab.pipeline.cell import run_cell
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import DONE, Store
from conftest import SMOKE, compose

BASE = [*SMOKE, "objective=base", "method=base"]


def test_a_benchmark_generated_for_one_eval_set_is_reused_by_another(outputs):
    first = compose([*BASE, f"paths.outputs={outputs}", "eval.benchmarks=[testbed_2step,testbed_3step]"])
    second = compose([*BASE, f"paths.outputs={outputs}", "eval.benchmarks=[testbed_3step,testbed_5step]"])
    a, b = plan_cell(first).infer_keys(), plan_cell(second).infer_keys()
    assert a["testbed_3step"] == b["testbed_3step"] and a["testbed_2step"] != b["testbed_5step"]
    assert plan_cell(first).key != plan_cell(second).key  # two cells, two grade artefacts
    assert run_cell(first)["status"] == "ok"
    store = Store(outputs)
    shared = store.path("infer", a["testbed_3step"])
    stamp = (shared / DONE).stat().st_mtime_ns, (shared / "testbed_3step.jsonl").stat().st_mtime_ns
    result = run_cell(second)
    assert result["status"] == "ok", result.get("traceback")
    # the shared benchmark was read, not generated again; only testbed_5step was generated
    assert ((shared / DONE).stat().st_mtime_ns, (shared / "testbed_3step.jsonl").stat().st_mtime_ns) == stamp
    assert (store.path("infer", b["testbed_5step"]) / DONE).is_file()
    assert sorted(p.name for p in (store.root / "infer").iterdir()) == sorted({*a.values(), *b.values()})
    both = [run_cell(c)["scores"]["testbed_3step"]["accuracy"] for c in (first, second)]
    assert both[0] == both[1]  # the same generations, the same score
    meta = json.loads((store.path("grade", plan_cell(second).key) / "eval.json").read_text())
    assert meta["infer"]["testbed_3step"] == f"infer/{a['testbed_3step']}"
    assert set(meta["generators"]) == {"testbed_3step", "testbed_5step"}


def test_grading_a_benchmark_overlaps_generating_the_next(outputs):
    """The first benchmark's graded rows are written before the last benchmark's generations are complete."""
    cfg = compose([*BASE, f"paths.outputs={outputs}", "eval.limit=24", "inference.max_new_tokens=60"])
    assert run_cell(cfg)["status"] == "ok"
    store, plan = Store(outputs), plan_cell(cfg)
    keys = plan.infer_keys()
    first, last = cfg.eval.benchmarks[0], cfg.eval.benchmarks[-1]
    graded_first = (store.path("grade", plan.key) / f"{first}.jsonl").stat().st_mtime
    generated_last = json.loads((store.path("infer", keys[last]) / DONE).read_text())["finished"]
    assert graded_first < generated_last


def test_a_generation_stream_that_ends_early_leaves_the_grade_unfinished(outputs):
    from cft_lab.eval.stage import run_grade, run_infer

    cfg = compose([*BASE, f"paths.outputs={outputs}", "eval.benchmarks=[testbed_2step,testbed_3step]"])
    store, plan = Store(outputs), plan_cell(cfg)
    keys = plan.infer_keys()
    from cft_lab.train.modeling import model_path

    run_infer(cfg, store, {"testbed_2step": keys["testbed_2step"]}, model_path(cfg.model))
    dirs = {b: store.path("infer", k) for b, k in keys.items()}
    try:
        run_grade(cfg, store, plan.key, dirs, iter(["testbed_2step"]))
    except RuntimeError as e:
        assert "no generations for testbed_3step" in str(e)
    else:
        raise AssertionError("grading finished without testbed_3step's generations")
    grade_dir = store.path("grade", plan.key)
    assert not (grade_dir / DONE).exists() and (grade_dir / "testbed_2step.jsonl").is_file()  # kept for the rerun
