"""docs/extending.md's worked examples, executed: an objective, a teacher, a benchmark and a table added the way the
page says, each run through the real machinery (the objective through the whole tiny pipeline)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import REPO, SMOKE, compose

DOC = (REPO / "docs" / "extending.md").read_text(encoding="utf-8")


def example(name: str) -> str:
    """The fenced code block that follows ``<!-- example: name -->`` in docs/extending.md."""
    m = re.search(rf"<!-- example: {re.escape(name)} -->\s*```\w+\n(.*?)```", DOC, re.S)
    assert m, f"docs/extending.md has no example {name!r}"
    return m.group(1)


@pytest.fixture
def sft_wrong(tmp_path, monkeypatch):
    """The doc's objective, registered for one test: its registry entry and its YAML on a config search path."""
    from cft_lab.train import objectives

    monkeypatch.setitem(objectives.OBJECTIVES, "sft_wrong", None)  # removed again after the test
    exec(example("objective-registry"), {"__name__": "example"})  # registers it in the one registry
    conf = tmp_path / "conf" / "objective"
    conf.mkdir(parents=True)
    (conf / "sft_wrong.yaml").write_text(example("objective-yaml"))
    return f"hydra.searchpath=[file://{tmp_path / 'conf'}]"


def test_a_new_objective_runs_through_the_tiny_pipeline(sft_wrong, outputs):
    from cft_lab.pipeline.cell import run_cell
    from cft_lab.pipeline.store import Store

    cfg = compose(SMOKE + [sft_wrong, "objective=sft_wrong", f"paths.outputs={outputs}"])
    assert (cfg.objective.name, cfg.objective.label) == ("sft_wrong", "WebInstruct-wrong-SFT")
    result = run_cell(cfg)
    assert result["status"] == "ok", result.get("error")
    pairs = result["train_examples"]
    # the testbed's strong teacher calls about half of the noisy solver's responses wrong: those are the pairs
    assert pairs["objective"] == "sft_wrong" and pairs["records"] == 48
    assert pairs["pairs"] + pairs["skipped"]["judged right"] == 48 and 10 <= pairs["pairs"] <= 38
    card = result["data_card"]
    assert card["arms"]["sft_wrong"]["usable"] == pairs["pairs"]
    assert card["arms"]["sft_wrong"]["usable"] + card["arms"]["sft_verified"]["usable"] == 48
    records = [
        json.loads(x)
        for x in (Store(outputs).path("data", result["stages"]["data"]) / "records.jsonl").read_text().splitlines()
    ]
    assert sum(r["verdict"] == "wrong" for r in records) == pairs["pairs"]


def test_a_new_objective_is_checked_like_the_others(sft_wrong):
    from cft_lab.config import ConfigError

    with pytest.raises(ConfigError, match="objective=sft_wrong needs the teacher's verdicts, but teacher=none"):
        compose(SMOKE + [sft_wrong, "objective=sft_wrong", "teacher=none"])


def test_the_teacher_example_answers_every_task_in_order():
    from cft_lab.data.verdicts import parse_verdict
    from cft_lab.teachers import Teacher, TeacherTask, summarize

    scope: dict = {"__name__": "example"}
    exec(example("teacher-class"), scope)
    teacher = scope["AgreeableTeacher"]()
    assert isinstance(teacher, Teacher)
    tasks = [TeacherTask("a", "critique", "1+1?", "3"), TeacherTask("b", "answer", "2+2?", "4")]
    results = teacher.run(tasks)
    assert [(r.record_id, r.kind, r.status) for r in results] == [("a", "critique", "ok"), ("b", "answer", "ok")]
    assert parse_verdict(results[0].text).verdict == "right"
    assert summarize(results)["ok"] == 2


def test_every_teacher_kind_has_a_builder_and_every_builder_a_kind():
    from cft_lab.options import TeacherKind
    from cft_lab.teachers import TEACHER_KINDS

    assert set(TEACHER_KINDS) == set(TeacherKind) and len(TEACHER_KINDS) == 6


def test_the_benchmark_example_registers_a_harder_testbed_column(monkeypatch):
    from cft_lab.eval import benchmarks
    from cft_lab.pipeline.plan import plan_cell

    monkeypatch.setitem(benchmarks.REGISTRY, "testbed_6step", None)  # both removed again after the test
    monkeypatch.setitem(benchmarks.TESTBED_SPECS, "testbed_6step", None)
    exec(example("benchmark-registry"), {"__name__": "example"})
    items = benchmarks.items("testbed_6step")
    assert len(items) == 200 and benchmarks.label("testbed_6step") == "6-step (OOD)"
    assert all(len(p.steps) == 6 for p in benchmarks.problems_for("testbed_6step"))
    cfg = compose(SMOKE + ["eval.benchmarks=[testbed_5step,testbed_6step]"])
    plan = plan_cell(cfg)
    assert plan.stages[-2].benchmark == "testbed_6step" and plan.stages[-2].summary == "testbed_6step: 6 prompts"
    assert "testbed_6step 6" in plan.stages[-3].summary  # 6 prompts at eval.limit=6, in the decoding summary


def test_the_table_example_expands_to_its_cells(tmp_path):
    from cft_lab.report.tables import expand

    folder = tmp_path / "experiments" / "table"
    folder.mkdir(parents=True)
    (folder / "table7_small.yaml").write_text(example("table-yaml"))
    cells = expand("table7_small", [f"hydra.searchpath=[file://{tmp_path / 'experiments'}]"])
    assert [(c.model.name, c.run.method, c.run.table) for c in cells] == [
        ("tiny_small", "sft_verified", "table7"),
        ("tiny_small", "cft_testbed_weak", "table7"),
        ("tiny_small", "cft", "table7"),
    ]
