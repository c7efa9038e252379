"""End to end on tiny settings, through the real stages and the real CLI: a cell trains and changes its
parameters, a sweep with a failing cell still renders its table, a rerun skips finished cells, and a W&B offline
run holds the config and metrics with no secret anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cft_lab.pipeline.cell import run_cell
from cft_lab.pipeline.plan import plan_cell
from cft_lab.pipeline.store import Store
from conftest import SMOKE, compose, run_cli
from wandb_file import config_and_summary

SECRET = "sk-THIS-IS-A-TEST-SECRET-0123456789abcdef"


def test_cell_trains_selects_and_scores(outputs):
    import torch
    from safetensors.torch import load_file

    from cft_lab.train.modeling import model_path

    cfg = compose(
        SMOKE
        + [
            "objective=cft",
            f"paths.outputs={outputs}",
            "eval.critique.enabled=true",
            "eval.critique.limit=8",
            "eval.critique.max_new_tokens=48",
        ]
    )
    result = run_cell(cfg)
    assert result["status"] == "ok", result.get("traceback")
    assert set(result["scores"]) == {"testbed_2step", "testbed_3step", "testbed_4step", "testbed_5step"}
    assert all(
        s["n"] == 6 and 0 <= s["ci_low"] <= s["accuracy"] <= s["ci_high"] <= 100 for s in result["scores"].values()
    )

    store, plan = Store(outputs), plan_cell(cfg)
    train_dir = store.path("train", plan.key_of("train"))
    counts = json.loads((train_dir / "pairs.json").read_text())
    assert counts["objective"] == "cft" and counts["pairs"] == 48 and counts["examples"] + counts["dropped"] == 48
    compute = result["compute"]  # 6 steps of 16 examples over 48 pairs: two epochs, estimated from examples seen
    assert (compute["optimizer_steps"], compute["examples_seen"], compute["exact"]) == (6, 96, False)
    assert compute["loss_tokens"] == round(96 * counts["loss_tokens"] / counts["examples"])
    assert compute["flops"] == 6 * compute["parameters"] * compute["attended_tokens"] > 0
    assert compute["loss_tokens"] < compute["attended_tokens"] and compute["train_wall_s"] > 0
    selection = json.loads((store.path("select", plan.key_of("select")) / "selection.json").read_text())
    assert [c["step"] for c in selection["checkpoints"]] == [3, 6]
    assert selection["selected"] in selection["checkpoints"] and result["selected"] == selection["selected"]["path"]

    base = load_file(str(Path(model_path(cfg.model)) / "model.safetensors"))
    tuned = load_file(str(train_dir / "checkpoint-6" / "model.safetensors"))
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert len(changed) == len(base), f"unchanged after training: {sorted(set(base) - set(changed))}"

    records = [json.loads(x) for x in (store.path("data", plan.key_of("data")) / "records.jsonl").open()]
    assert len(records) == 48 and all(r["critique"].endswith("[END]") for r in records)
    graded = [json.loads(x) for x in (store.path("grade", plan.key) / "testbed_2step.jsonl").open()]
    assert len(graded) == 6 and all({"id", "index", "prompt", "gold", "samples", "correct"} <= set(r) for r in graded)
    assert all(r["correct"] == r["samples"][0]["correct"]["testbed"] for r in graded)
    fmt = result["answer_format"]  # outputs with a boxed integer, first sample of each item
    assert fmt["by_benchmark"]["testbed_2step"]["parseable"] == sum(
        bool(r["samples"][0]["pred"]["testbed"]) for r in graded
    )
    assert fmt["n"] == 24 and fmt["share"] == pytest.approx(100 * fmt["parseable"] / 24, abs=0.01)
    assert selection["validation_test_overlap"] == {b: 0 for b in result["scores"]}
    assert result["selection"]["last"]["step"] == 6
    crit = result["critique"]  # the probe ran on 8 fresh (question, response) pairs
    from cft_lab.eval import benchmarks
    from cft_lab.testbed import noisy

    truly_wrong = sum(
        not noisy.noisy_solve(p, seed=1, error_rate=0.5).correct for p in benchmarks.problems_for("testbed_val", 8)
    )
    assert crit["pairs"] == 8 and crit["responses_wrong"] == truly_wrong
    assert crit["parsed"] + crit["unparsed"] == 8
    assert crit["tp"] + crit["fp"] + crit["fn"] + crit["tn"] == crit["parsed"]
    _check_layout(store, result["stages"], result["scores"])


def _check_layout(store: Store, stages: dict, benchmarks: list) -> None:
    """Every finished artefact holds the files the store's one layout description promises, and DONE.json."""
    from cft_lab.pipeline.store import DONE, LAYOUT

    for label, key in stages.items():
        stage, _, benchmark = label.partition("/")  # infer/<benchmark>: one artefact per benchmark
        folder = store.path(stage, key)
        assert (folder / DONE).is_file(), label
        held = [benchmark] if benchmark else benchmarks
        for pattern in LAYOUT[stage]:
            names = [pattern.replace("<benchmark>", b) for b in held] if "<benchmark>" in pattern else [pattern]
            for name in names:
                assert list(folder.glob(name)), f"{stage}/{key} lacks {name}"


def test_eval_of_every_paper_benchmark_end_to_end_on_a_tiny_model(outputs):
    """The eval stage on all ten benchmarks of the paper with a tiny model: prompts, generation, three graders,
    per-sample rows, aggregates with bootstrap CIs, provenance; an interrupted generation resumes item by item."""
    cfg = compose(
        [
            "objective=base",
            "eval=paper_suite",
            "eval.limit=3",
            "inference.max_new_tokens=12",
            "inference.batch_size=8",
            "logger=none",
            "run.num_threads=1",
            f"paths.outputs={outputs}",
        ]
    )
    result = run_cell(cfg)
    assert result["status"] == "ok", result.get("traceback")
    names = [
        "math",
        "minerva_math",
        "gsm8k",
        "olympiadbench",
        "aime24",
        "amc23",
        "theoremqa",
        "gpqa",
        "mmlu_pro",
        "math500",
    ]
    assert list(result["scores"]) == names
    store, plan = Store(outputs), plan_cell(cfg)
    grade_dir = store.path("grade", plan.key)
    for name in names:
        s = result["scores"][name]
        assert s["n"] == 3 and s["ci_method"] == "bootstrap" and set(s["modes"]) == {"paper", "strict", "math_verify"}
        assert s["truncated_outputs"] <= 3 and s["timeouts"] == {"paper": 0, "strict": 0, "math_verify": 0}
        rows = [json.loads(x) for x in (grade_dir / f"{name}.jsonl").open()]
        assert [r["index"] for r in rows] == [0, 1, 2]
        for r in rows:
            sample = r["samples"][0]
            assert set(sample["pred"]) == set(sample["correct"]) == {"paper", "strict", "math_verify"}
            assert r["prompt"] == __import__("cft_lab.eval.benchmarks", fromlist=["x"]).prompt(
                name,
                r["index"],
                "gpqa-qwen" if name == "gpqa" else "mmlu-pro-cot-0shot" if name == "mmlu_pro" else "qwen25-math-cot",
            )
    meta = json.loads((grade_dir / "eval.json").read_text())
    assert len(meta["templates"]["math"]["hash"]) == 12 and meta["templates"]["gpqa"]["template"] == "gpqa-qwen"
    assert meta["sampling"]["temperature"] == 0.0 and meta["gpqa_seed"] == 0
    assert {"torch", "transformers", "sympy", "math-verify"} <= set(meta["versions"])
    assert meta["generator"]["backend"] == "hf"


def test_interrupted_generation_redoes_only_the_missing_items(tmp_path):
    from cft_lab.eval import engine
    from cft_lab.eval.generation import make_generator
    from cft_lab.train.modeling import model_path

    cfg = compose(["inference.max_new_tokens=8", "logger=none"])
    gen = make_generator(model_path(cfg.model), cfg.model, cfg.inference)
    asked: list[str] = []

    class Spy:  # the real generator, recording which prompts it is asked for
        def generate(self, prompts, stops, **kw):
            asked.extend(prompts)
            return gen.generate(prompts, stops, **kw)

    first = engine.generate_benchmark(Spy(), "testbed_val", "qwen25-math-cot", tmp_path, limit=10, seed=0)
    full = first.read_text().splitlines()
    # an interrupted run: 6 rows written, the 7th torn mid-line by a kill
    first.unlink()
    (tmp_path / "testbed_val.partial.jsonl").write_text("\n".join(full[:6]) + "\n" + full[6][:25])
    asked.clear()
    again = engine.generate_benchmark(Spy(), "testbed_val", "qwen25-math-cot", tmp_path, limit=10, seed=0)
    assert len(asked) == 4  # items 6..9 only
    assert again.read_text().splitlines() == full  # same rows, same order: per-item seeds, greedy
    assert not (tmp_path / "testbed_val.partial.jsonl").exists()


def _cutoff_between_sft_and_cft(outputs: Path) -> int:
    """A cutoff every SFT pair fits in and no CFT pair does (a real, deliberate failure of the CFT cell)."""
    from cft_lab.data.stage import build_records
    from cft_lab.train.modeling import load_tokenizer, model_path
    from cft_lab.train.objectives import build_pairs

    lengths = {}
    for obj in ("sft", "cft"):
        cfg = compose(SMOKE + [f"objective={obj}"])
        tok = load_tokenizer(model_path(cfg.model))
        pairs, _ = build_pairs(cfg.objective, [r.to_dict() for r in build_records(cfg)[0]])
        lengths[obj] = [len(tok(p.prompt + p.completion, add_special_tokens=False)["input_ids"]) for p in pairs]
    assert max(lengths["sft"]) < min(lengths["cft"])
    return max(lengths["sft"])


def test_sweep_with_a_failing_cell_renders_and_rerun_skips_finished(outputs):
    cutoff = _cutoff_between_sft_and_cft(outputs)
    args = [
        "cft_lab",
        "table=demo",
        "method=base,sft,cft",
        f"train.cutoff_len={cutoff}",
        "train.truncation=drop",
        *SMOKE,
    ]
    first = run_cli(args, outputs, check=False)  # the sweep goes on past the failing cell and renders its table,
    assert first.returncode == 1  # then exits non-zero: scripts, CI and SLURM see the hole
    assert "error: 1 cell(s) failed: tiny_math/cft" in first.stderr
    md = (outputs / "tables" / "demo.md").read_text()
    assert "MaskError" in md and "all 48 pairs were dropped" in md
    for name in ("demo.csv", "demo.tex", "demo.png"):
        assert (outputs / "tables" / name).stat().st_size > 0
    results = {p.parent.name: json.loads(p.read_text()) for p in (outputs / "store" / "cells").glob("*/result.json")}
    assert sorted(r["status"] for r in results.values()) == ["failed", "ok", "ok"]
    failed = next(r for r in results.values() if r["status"] == "failed")
    assert failed["method"] == "cft" and "Traceback" in failed["traceback"]
    assert "Base" in md and "WebInstruct-SFT" in md

    stamps = {k: (outputs / "store/cells" / k / "result.json").stat().st_mtime_ns for k in results}
    second = run_cli(args, outputs, check=False)
    assert second.returncode == 1 and (second.stdout + second.stderr).count("finished before") == 2
    for key, r in results.items():
        same = (outputs / "store/cells" / key / "result.json").stat().st_mtime_ns == stamps[key]
        assert same == (r["status"] == "ok"), key  # finished cells untouched; the failed one is retried


def test_wandb_offline_run_holds_config_and_metrics_and_no_secret(outputs, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    overrides = [o for o in SMOKE if o != "logger=none"] + ["logger=wandb", "objective=sft", "method=sft"]
    run_cli(["cft_lab", *overrides], outputs)
    runs = list((outputs / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    config, summary = config_and_summary(runs[0])
    assert config["objective"]["name"] == "sft" and config["model"]["name"] == "tiny_math"
    stages = {"data", "train", "select", "infer/testbed_2step", "infer/testbed_3step", "infer/testbed_4step"}
    assert len(config["cell_key"]) == 16 and set(config["stage_keys"]) == stages | {"infer/testbed_5step", "grade"}
    assert 0 <= summary["test/testbed_2step/accuracy"] <= 100 and summary["train/loss"] > 0
    assert summary["data/examples"] == 48 and "select/testbed_val" in summary
    assert summary["compute/optimizer_steps"] == 6 and summary["compute/loss_tokens"] > 0  # what training cost
    assert summary["compute/flops"] == 6 * summary["compute/parameters"] * summary["compute/attended_tokens"]
    assert 0 <= summary["test/parseable_share"] <= 100
    leaked = [
        p
        for p in outputs.rglob("*")
        if p.is_file()
        and p.stat().st_size < 50_000_000
        and (SECRET.encode() in p.read_bytes() or b"0123456789abcdef0123456789abcdef01234567" in p.read_bytes())
    ]
    assert leaked == []


def test_paper_cell_with_an_unpinned_hub_source_fails_before_training(outputs):
    cfg = compose(
        [
            "model=qwen2_5_math_7b",
            "data=webinstruct_cft_50k",
            "teacher=gpt4o_1120",
            "train=paper",
            "inference=greedy",
            "eval=paper_math6",
            "logger=none",
            "objective=sft",
            "inference.backend=hf",
            f"paths.outputs={outputs}",
        ]
    )
    result = run_cell(cfg)
    assert result["status"] == "failed" and "revision" in result["error"]
    assert not (outputs / "store" / "train").exists()


def _build_data(outputs: str) -> None:
    from cft_lab.data.stage import run_data

    cfg = compose(["logger=none", "data.testbed.n_train=3000", f"paths.outputs={outputs}"])
    run_data(cfg, Store(outputs), plan_cell(cfg).key_of("data"))


def test_concurrent_jobs_build_a_shared_artefact_once(outputs):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_build_data, args=(str(outputs),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    (data_dir,) = (outputs / "store" / "data").iterdir()
    assert sum(1 for _ in (data_dir / "records.jsonl").open()) == 3000
    assert json.loads((data_dir / "DONE.json").read_text())["records"] == 3000


def test_paper_scale_table_renders_the_papers_numbers_beside_ours(outputs):
    """Rendering reads cells by their planned keys. Two paper-scale cells are written by hand here (named as such:
    7B models cannot run on this machine); the rest stay holes, and every cell shows the paper's number."""
    from cft_lab.report.tables import expand, render

    configs = expand("table2", [f"paths.outputs={outputs}"])
    store = Store(outputs)
    for cfg in configs[:2]:  # qwen2_5_math_7b / base and / sft
        scores = {
            b: {"label": lbl, "correct": 30, "n": 60, "accuracy": 50.0, "ci_low": 37.7, "ci_high": 62.3}
            for b, lbl in zip(
                cfg.eval.benchmarks, ["MATH", "Minerva-Math", "GSM8K", "OlympiadBench", "AIME24", "AMC23"]
            )
        }
        store.write_cell_result(plan_cell(cfg).key, {"status": "ok", "scores": scores, "error": None})
    out = render("table2", [f"paths.outputs={outputs}"], quiet=True)
    md = out["paths"]["md"].read_text()
    assert "2/15 cells done" in md
    assert "(paper 55.4)" in md and "(paper 59.0)" in md  # Base and SFT MATH: the same in every version
    assert "(paper 79.4 v1, 80.2 v3/v4)" in md  # CFT MATH changed between versions: both are shown
    assert md.count("not run") >= 13


def test_sweep_end_logs_the_rendered_table_to_wandb(outputs):
    overrides = [o for o in SMOKE if o != "logger=none"] + ["logger=wandb"]
    run_cli(["cft_lab", "table=demo", "method=base", *overrides], outputs)
    runs = sorted((outputs / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 2  # the cell, then the table
    config, summary = config_and_summary(runs[-1])
    assert config["table"] == "demo"
    assert any(k.startswith("demo") for k in summary), sorted(summary)
