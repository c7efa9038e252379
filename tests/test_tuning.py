"""Per-arm tuning: a trial trains and selects on the validation split only (a read of a test set fails it), the
choices per (model, arm) follow the rule, and the tuned tables read them through ``train=tiny_tuned``."""

from __future__ import annotations

import json

import pytest
import yaml

from cft_lab import config as config_module
from cft_lab.config import ConfigError
from cft_lab.eval import benchmarks
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import Store, write_json
from cft_lab.pipeline.tune import read_trial, run_trial, trial_key
from cft_lab.testbed import problems
from conftest import SMOKE, compose, run_cli

TRIAL = SMOKE + ["run.tune=true", "run.strict=true"]


@pytest.fixture
def spy(monkeypatch):
    """Records every benchmark whose items are read and every split whose questions are generated."""
    seen: dict[str, set] = {"benchmarks": set(), "splits": set()}
    load, generate = benchmarks._load, problems.generate

    def spy_load(name):
        seen["benchmarks"].add(name)
        return load(name)

    def spy_generate(split, *args, **kwargs):
        seen["splits"].add(split)
        return generate(split, *args, **kwargs)

    monkeypatch.setattr(benchmarks, "_load", spy_load)
    monkeypatch.setattr(problems, "generate", spy_generate)
    return seen


def test_a_trial_trains_selects_and_reads_validation_only(outputs, spy):
    cfg = compose(TRIAL + ["objective=sft", "train.learning_rate=3e-4", f"paths.outputs={outputs}"])
    result = run_trial(cfg)
    assert result["status"] == "ok"
    key = trial_key(plan_cell(cfg))
    assert read_trial(Store(outputs), key) == result
    val = result["validation"]
    assert val["benchmark"] == "testbed_val" and 0 <= val["accuracy"] <= 100 and val["step"] in (3, 6)
    assert result["params"]["learning_rate"] == 3e-4 and result["compute"]["optimizer_steps"] == 6
    assert spy["benchmarks"] <= {"testbed_val"} and "test" not in spy["splits"], spy
    assert "train" in spy["splits"]  # it did build its data
    selection = json.loads((Store(outputs).path("select", key) / "selection.json").read_text())
    assert selection["validation_test_overlap"] == {}  # not even the test questions were read to count overlaps
    infer_keys = plan_cell(cfg).infer_keys()  # one per test benchmark: none was generated
    assert infer_keys and not any(Store(outputs).path("infer", k).exists() for k in infer_keys.values())


def test_tuning_fails_when_a_trial_reads_a_test_split(outputs, monkeypatch):
    """The guard is real: a selection stage that (by a bug) scored checkpoints on a test set stops the trial."""
    from cft_lab.eval import stage

    real = stage.run_select

    def leaky_select(cfg, store, key, train_dir):
        benchmarks.items("testbed_2step", limit=2)  # a test set
        return real(cfg, store, key, train_dir)

    monkeypatch.setattr(stage, "run_select", leaky_select)
    cfg = compose(TRIAL + ["objective=sft", f"paths.outputs={outputs}"])
    with pytest.raises(benchmarks.SplitGuardError, match="testbed_2step, a test set"):
        run_trial(cfg)
    lenient = compose(SMOKE + ["run.tune=true", "objective=sft", f"paths.outputs={outputs}"])
    result = run_trial(lenient)  # without run.strict the failure is recorded, not a score
    assert result["status"] == "failed" and "SplitGuardError" in result["error"] and "validation" not in result
    with benchmarks.forbid_test_splits("a check"), pytest.raises(RuntimeError, match="test-split"):
        problems.generate("test", 3)
    assert benchmarks.items("testbed_2step", limit=1)  # outside the guard the test set is readable again


def test_tuning_on_a_test_set_is_refused_at_compose_time():
    with pytest.raises(ConfigError, match="tuning reads validation data only"):
        compose(["run.tune=true", "eval.select.benchmark=testbed_2step"])
    with pytest.raises(ConfigError, match="tuning reads validation data only"):
        compose(["run.tune=true", "eval.select.benchmark=math500"])
    assert compose(["run.tune=true"]).run.tune


def _fake_trial(store: Store, cfg, accuracy: float) -> None:
    key = trial_key(plan_cell(cfg))
    write_json(
        store.path("trials", key) / "result.json",
        {"status": "ok", "trial": key, "validation": {"accuracy": accuracy, "step": 10}, "compute": {}},
    )


def test_the_sweep_chooses_per_arm_writes_the_tuned_file_and_tables_read_it(outputs, tmp_path, monkeypatch):
    from cft_lab.report import tables, tuning

    monkeypatch.setattr(config_module, "TUNED_DIR", tmp_path / "tuned")
    grid = ["train.learning_rate=1e-5,1e-4", "train.num_train_epochs=1,2", "model=tiny_math", "method=sft,cft"]
    configs = tables.expand("tune_tiny", [f"paths.outputs={outputs}", *grid])
    assert len(configs) == 8 and all(c.run.tune for c in configs)
    store = Store(outputs)
    scores = {("sft", 1e-5, 1.0): 50.0, ("sft", 1e-4, 1.0): 61.0, ("sft", 1e-5, 2.0): 55.0, ("sft", 1e-4, 2.0): 61.0}
    scores |= {("cft", 1e-5, 1.0): 52.0, ("cft", 1e-4, 1.0): 40.0, ("cft", 1e-5, 2.0): 58.5, ("cft", 1e-4, 2.0): 20.0}
    with pytest.raises(ValueError, match="not done"):  # a choice among part of the grid is not an equal budget
        _fake_trial(store, configs[0], 1.0)
        tuning.choose(tuning.collect(configs))
    for cfg in configs:
        _fake_trial(store, cfg, scores[(cfg.objective.name, cfg.train.learning_rate, cfg.train.num_train_epochs)])
    out = tables.render("tune_tiny", [f"paths.outputs={outputs}", *grid], out_dir=tmp_path / "tables", quiet=True)
    chosen = yaml.safe_load((tmp_path / "tuned" / "tiny.yaml").read_text())["chosen"]
    # sft: 61.0 twice, the tie goes to 1 epoch; cft: 58.5 at lr 1e-5, 2 epochs
    assert chosen["tiny_math"]["sft"] == {
        "learning_rate": 1e-4,
        "num_train_epochs": 1.0,
        "validation": 61.0,
        "step": 10,
        "trials": 4,
    }
    assert (chosen["tiny_math"]["cft"]["learning_rate"], chosen["tiny_math"]["cft"]["num_train_epochs"]) == (1e-5, 2.0)
    assert "**58.5**" in out["paths"]["md"].read_text() and "**61.0**" in out["paths"]["md"].read_text()
    tuned = compose(["train=tiny_tuned", "method=cft"])
    assert (tuned.train.learning_rate, tuned.train.num_train_epochs, tuned.train.name) == (1e-5, 2.0, "tiny_tuned")
    assert compose(["train=tiny_tuned", "method=sft"]).train.learning_rate == 1e-4
    base = compose(["train=tiny_tuned", "method=base"])  # trains nothing: the plain recipe's values, in no key
    assert base.train.learning_rate == compose(["train=tiny"]).train.learning_rate
    with pytest.raises(Exception, match="no tuned learning_rate for model=tiny_small"):
        compose(["train=tiny_tuned", "method=cft", "model=tiny_small"])
    # a tuned cell and a plain cell with the same values are the same artefacts
    same = compose(["train=tiny", "method=cft", "train.learning_rate=1e-5", "train.num_train_epochs=2"])
    assert plan_cell(tuned).key == plan_cell(same).key


def test_a_sweep_over_part_of_the_models_adds_to_the_tuned_file(outputs, tmp_path, monkeypatch):
    """Tuning one base at a time (`make tune SCALE=tiny ARGS=model=tiny_math`) keeps the other bases' choices; a
    re-sweep of a pair replaces that pair's choice and trials whole."""
    from cft_lab.report import tables

    monkeypatch.setattr(config_module, "TUNED_DIR", tmp_path / "tuned")
    store = Store(outputs)

    def sweep(model: str, lrs: str, score) -> dict:
        grid = [f"train.learning_rate={lrs}", "train.num_train_epochs=1", f"model={model}", "method=sft"]
        configs = tables.expand("tune_tiny", [f"paths.outputs={outputs}", *grid])
        for cfg in configs:
            _fake_trial(store, cfg, score(cfg.train.learning_rate))
        tables.render("tune_tiny", [f"paths.outputs={outputs}", *grid], out_dir=tmp_path / "tables", quiet=True)
        return yaml.safe_load((tmp_path / "tuned" / "tiny.yaml").read_text())

    first = sweep("tiny_math", "1e-5,1e-4", lambda lr: 70.0 if lr == 1e-4 else 60.0)
    assert first["chosen"]["tiny_math"]["sft"]["learning_rate"] == 1e-4 and len(first["trials"]) == 2
    second = sweep("tiny_small", "1e-5,1e-4", lambda lr: 30.0 if lr == 1e-5 else 20.0)
    assert second["chosen"]["tiny_math"]["sft"]["learning_rate"] == 1e-4  # kept
    assert second["chosen"]["tiny_small"]["sft"]["learning_rate"] == 1e-5
    assert sorted((t["model"], t["learning_rate"]) for t in second["trials"]) == [
        ("tiny_math", 1e-5),
        ("tiny_math", 1e-4),
        ("tiny_small", 1e-5),
        ("tiny_small", 1e-4),
    ]
    third = sweep("tiny_math", "3e-4", lambda lr: 10.0)  # a new grid for tiny_math/sft replaces its old trials
    assert third["chosen"]["tiny_math"]["sft"]["learning_rate"] == 3e-4
    assert sorted(t["learning_rate"] for t in third["trials"] if t["model"] == "tiny_math") == [3e-4]
    assert third["chosen"]["tiny_small"]["sft"]["learning_rate"] == 1e-5
    assert compose(["train=tiny_tuned", "method=sft", "model=tiny_small"]).train.learning_rate == 1e-5


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_failed_trial_fails_the_run_and_its_dry_run(outputs, dry_run):
    """A trial preflight refuses (here: a model folder that does not exist) is a failed trial: the run, and the dry
    run before it, exit non-zero and name it (a failure that exits 0 would let a sweep choose from a partial grid)."""
    args = ["cft_lab", *SMOKE, "run.tune=true", "objective=sft", "model.path=/no/such/model", f"dry_run={dry_run}"]
    proc = run_cli(args, outputs, timeout=300, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "no testbed model at /no/such/model" in proc.stdout + proc.stderr
    assert "1 cell(s) failed" in proc.stderr
    if not dry_run:
        (result,) = [json.loads(p.read_text()) for p in (outputs / "store" / "trials").glob("*/result.json")]
        assert result["status"] == "failed" and "no testbed model" in result["error"]
