"""Every error before the GPUs (issue 13, item 3): the paper-scale dry run prints GPU-hours and disk per cell and
refuses what a GPU job would meet, each with its fix; what is already built needs nothing more (no API key, no hub).
More refusals, one per input, are in tests/test_bad_input.py (unpinned model, devices, disk, offline cache)."""

from __future__ import annotations

import importlib.util
import re

import pytest
from test_bad_input import LOCAL, _files, loopback  # noqa: F401 (a fixture)

from cft_lab.pipeline.preflight import PreflightError, preflight
from cft_lab.pipeline.store import Store
from conftest import SMOKE, compose, run_cli

GPU_PACKAGES = {"deepspeed": "needs DeepSpeed", "flash_attn": "needs flash-attn", "vllm": "inference.backend=vllm"}


def test_the_paper_table2_dry_run_prints_estimates_per_cell_and_refuses_the_unpinned_dataset(outputs):
    proc = run_cli(["cft_lab", "table=table2", "dry_run=true", "logger=none", "model.allow_unpinned=true"], outputs,
                   timeout=300, check=False)  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 1
    needs = re.findall(r"^  needs  ~([\d.]+) GPU-h .* on a job of (\d+) GPU\(s\), ~([\d.]+) h wall; disk peak ~(.+), "
                       r"kept ~(.+)$", out, re.M)  # fmt: skip
    assert len(needs) == 2 * 15  # each job's plan, then the sweep's
    jobs = [int(n[1]) for n in needs[:15]]
    assert jobs.count(1) == 3 and jobs.count(8) == 12  # evaluation-only cells ask for one GPU, trained ones for 8
    trained = [n for n in needs[:15] if n[1] == "8"]
    assert all(3 < float(n[0]) < 30 and n[3].endswith(("GB", "TB")) for n in trained), trained
    refusals = [line for line in out.splitlines() if line.startswith("  refused: ")]
    unpinned = [line for line in refusals if "hub datasets must be loaded at a pinned revision" in line]
    assert len(unpinned) == 12 and all("set data.source.revision=<sha>" in line for line in unpinned)
    assert re.search(r"^table2 on cluster=h100: ~\d+ GPU-h in all", out, re.M)
    assert not (outputs / "store").exists()  # a dry run runs nothing


@pytest.mark.parametrize("package", ["deepspeed", "flash_attn"])
def test_a_gpu_package_the_cell_needs_is_refused_before_it_runs(package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here: its refusal cannot be seen")
    over = {"deepspeed": ["train.launcher=torchrun", "train.deepspeed=conf/deepspeed/zero3.json"],
            "flash_attn": ["model.attn_implementation=flash_attention_2"]}[package]  # fmt: skip
    with pytest.raises(PreflightError, match=f"{GPU_PACKAGES[package]}.*make install-gpu"):
        preflight(compose([*SMOKE, *over]), dry_run=True)
    # a base cell evaluated with vLLM trains nothing and generates nothing with transformers: flash-attn is not needed
    if package == "flash_attn" and importlib.util.find_spec("vllm") is not None:
        preflight(compose([*SMOKE, *over, "objective=base", "inference=vllm_tiny"]), dry_run=True)


def test_every_problem_is_named_not_only_the_first():
    cfg = compose([*SMOKE, "train.launcher=torchrun", "train.num_devices=16", "model.num_parameters=1e13"])
    with pytest.raises(PreflightError) as e:
        preflight(cfg, dry_run=True)
    assert "train.num_devices=16 but a node of cluster=h100 has 8" in str(e.value)
    assert len(e.value.problems) >= 1 and str(e.value) == "; ".join(e.value.problems)


def test_a_built_dataset_needs_no_api_key_and_no_source(tmp_path, loopback, monkeypatch):  # noqa: F811
    """Buy the data once (make prepare's job, here a loopback server and a key); a later run of the same cell without
    the key is not refused for it: nothing is left to buy."""
    from test_bad_input import _files

    _files(tmp_path)
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in LOCAL] + [
        "teacher=gpt4o_mini", f"teacher.base_url={loopback.url}", "teacher.max_failed=1", "objective=cft"]  # fmt: skip
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-prepare-0123")
    run_cli(["cft_lab", *args, "run.stop_after=data"], out)
    monkeypatch.delenv("OPENAI_API_KEY")
    cfg = compose([*args, f"paths.outputs={out}"])
    with pytest.raises(PreflightError, match="OPENAI_API_KEY"):
        preflight(cfg)  # without the store's knowledge the key is required
    preflight(cfg, Store(out), dry_run=True)  # the built artefact: nothing to buy


API_MODEL = ["data=webinstruct_cft_50k", "teacher=gpt4o_1120", "inference=greedy", "eval=paper_math6", "logger=none",
             "model=gpt4o_0806", "objective=base"]  # fmt: skip


@pytest.mark.parametrize(
    ("who", "cell", "prefix", "model_field"),
    [("teacher=gpt4o_mini", [*LOCAL[:-1], "teacher=gpt4o_mini"], "teacher.", "teacher.model"),
     ("model=gpt4o_0806", API_MODEL, "model.api.", "model.path")],
)  # fmt: skip
def test_every_openai_endpoint_meets_the_same_checks(who, cell, prefix, model_field, monkeypatch, tmp_path):
    """The teacher and an API model (and MT-Bench's judge, tests/test_instruct.py) share one endpoint check: the key
    variable, the URL scheme, both prices or neither, a budget only with a price. Each refusal names the field."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    _files(tmp_path)
    if prefix == "teacher.":
        cell = [*cell, f"data.source.path={tmp_path}/wi.jsonl"]
    cases = [
        ([f"{prefix}api_key_env=CFT_LAB_NO_SUCH_KEY"], f"{who}: environment variable CFT_LAB_NO_SUCH_KEY "
                                                        f"({prefix}api_key_env, the API key) is not set"),
        ([f"{prefix}base_url=ftp://x"], f"{who}: {prefix}base_url=ftp://x: expected an http:// or https:// URL"),
        ([f"{prefix}price_input=1.0"], f"{who}: set both {prefix}price_input and {prefix}price_output"),
        ([f"{prefix}budget_usd=5", f"{model_field}=my-model"], f"{who}: {prefix}budget_usd=5 but model 'my-model' "
                                                                  "has no price"),
    ]  # fmt: skip
    for over, message in cases:
        with pytest.raises(PreflightError) as e:
            preflight(compose([*cell, *over]), dry_run=True)
        assert message in str(e.value), (over, str(e.value))
    preflight(compose([*cell, f"{prefix}price_input=1.0", f"{prefix}price_output=2.0"]), dry_run=True)  # priced: fine


def test_a_dry_run_names_half_a_price_pair_once(outputs, monkeypatch):
    """Preflight and the API model's cost estimate meet the same half-set price pair; the dry run says it once."""
    from cft_lab.pipeline.cell import run_cell

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    result = run_cell(compose([*API_MODEL, f"paths.outputs={outputs}", "model.api.price_input=1.0", "dry_run=true"]))
    assert result["status"] == "failed"
    assert result["error"].count("set both model.api.price_input and model.api.price_output") == 1, result["error"]
    assert "model=gpt4o_0806: set both" in result["error"]
