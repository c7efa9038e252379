"""The ``vllm`` generation backend for real, on the tiny testbed model, through vLLM's CPU build (``make test-vllm``;
needs ``make install-vllm``; marker ``vllm``, outside the default suite).

vLLM's CPU engine runs in worker processes started by ``spawn``, so the engine is driven from a real subprocess:
this file run as a script (``python tests/test_vllm.py OUT.json``), whose ``__main__`` guard keeps the spawned
workers from re-running it. One engine serves every scenario of a run; the run is made twice to check that every
completion (seeded, unseeded, greedy) reproduces across engines. The tests then compare what vLLM returned with
the ``hf`` backend in the test process.

Greedy agreement: both backends load the float32 model, but vLLM's CPU kernels (attention, fused norms) round
differently from eager PyTorch, so an exact match is not guaranteed in general. On the 64 prompts here the two
agree on every completion (text, token count, finish reason); the test asserts at least
``GREEDY_AGREEMENT = 0.95`` of the prompts equal and prints the measured rate, so a slip shows up as a number.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: The prompts (of the first 8) whose greedy traces on the shipped tiny-math have no two top logits closer than 0.5
#: (measured with the hf backend): a cold call reproduces greedy only where there is no near-tie. Prompt 2 has a tie
#: (0.0003 apart), prompts 0, 6, 7 gaps of 0.04-0.09, where vLLM's temperature floor (1e-2) can sample the runner-up.
COLD = (1, 3, 4, 5)
MAX_NEW_TOKENS = 48  # testbed answers take 36-71 tokens: a mix of "stop" and "length" endings
N_PROMPTS = 64
GREEDY_AGREEMENT = 0.95
SEEDS = [1000 * i for i in range(8)]  # per prompt; samples use seed + j, so seeds 1000 apart never overlap


def _inference(**overrides):
    from omegaconf import OmegaConf

    from cft_lab.config import InferenceConfig

    cfg = OmegaConf.merge(
        OmegaConf.structured(InferenceConfig), OmegaConf.load(REPO / "conf/inference/vllm_tiny.yaml"), overrides
    )
    return OmegaConf.to_object(cfg)


def _model():
    from cft_lab.config import ModelConfig
    from cft_lab.train.modeling import model_path

    cfg = ModelConfig(name="tiny_math", label="tiny-math", source="testbed", path="tiny_math")
    return model_path(cfg), cfg


def _prompts(k: int = N_PROMPTS) -> list[str]:
    from cft_lab.eval import benchmarks
    from cft_lab.prompts import render_eval_prompt

    return [render_eval_prompt("qwen25-math-cot", it["question"]) for it in benchmarks.get("testbed_val").load()[:k]]


def _scenarios(g) -> dict:
    """Every call the tests check, on one loaded generator (either backend)."""
    from cft_lab.prompts import MATH_STOP_STRINGS as STOPS

    P = _prompts()
    few = P[:8]
    other = [s + 500 for s in SEEDS]
    calls = {
        "greedy": lambda: g.generate(P, STOPS),
        "greedy_n3": lambda: g.generate(P[:4], STOPS, n=3),
        "stop_step2": lambda: g.generate(few, ["Step 2"]),
        "stop_end_variants": lambda: g.generate(few, ["[END]", "\\[END\\]", "(END)", "**END**", "\n"]),
        "sample_batch": lambda: g.generate(few, STOPS, seeds=SEEDS, n=3, temperature=1.0),
        "sample_alone": lambda: g.generate([few[5]], STOPS, seeds=[SEEDS[5]], n=3, temperature=1.0),
        "sample_reversed": lambda: g.generate(few[::-1], STOPS, seeds=SEEDS[::-1], n=3, temperature=1.0),
        "sample_other_seeds": lambda: g.generate(few, STOPS, seeds=other, n=3, temperature=1.0),
        "sample_unseeded_1": lambda: g.generate(few, STOPS, n=2, temperature=1.0),
        "sample_unseeded_2": lambda: g.generate(few, STOPS, n=2, temperature=1.0),
        "sample_cold": lambda: g.generate(
            [few[i] for i in COLD], STOPS, seeds=[SEEDS[i] for i in COLD], n=2, temperature=1e-3
        ),  # per-call override (vLLM floors it at 1e-2)
    }
    out = {name: [[dataclasses.asdict(c) for c in comps] for comps in call()] for name, call in calls.items()}
    out["describe"] = g.describe()
    out["modes"] = _modes(g)
    return out


def _modes(g) -> dict:
    """Greedy two-stage and single-pass traces of 8 items (cft_lab.eval.modes), on this generator."""
    import tempfile

    from cft_lab.eval import modes

    out = {}
    for mode in ("two_stage", "single_pass"):
        inf = _inference(mode=mode, temperature=0.0, max_new_tokens=MAX_NEW_TOKENS)
        inf.self_critique.max_rounds = 2
        inf.self_critique.max_new_tokens = MAX_NEW_TOKENS
        with tempfile.TemporaryDirectory() as tmp:
            path = modes.generate_benchmark(
                g, "testbed_val", "qwen25-math-cot", Path(tmp), inference=inf, limit=8, seed=0
            )
            out[mode] = [json.loads(line) for line in path.read_text().splitlines()]
    return out


def _main(out_path: str) -> None:
    from cft_lab.eval.generation import VLLMGenerator, make_generator

    model_dir, model_cfg = _model()
    with make_generator(model_dir, model_cfg, _inference(max_new_tokens=MAX_NEW_TOKENS)) as g:
        assert isinstance(g, VLLMGenerator)
        result = _scenarios(g)
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1])
    sys.exit(0)


import pytest  # noqa: E402  (the engine subprocess above needs none of this)

pytestmark = pytest.mark.vllm


def _run_engine(tmp: Path, name: str) -> dict:
    out = tmp / f"{name}.json"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONPATH": str(REPO),
        "VLLM_CACHE_ROOT": os.environ.get("VLLM_CACHE_ROOT", str(tmp / "vllm-cache")),
        "VLLM_CONFIG_ROOT": os.environ.get("VLLM_CONFIG_ROOT", str(tmp / "vllm-config")),
    }
    proc = subprocess.run(
        [sys.executable, __file__, str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0 or not out.is_file():
        raise AssertionError(f"vLLM engine run exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def vllm_runs(tmp_path_factory) -> tuple[dict, dict]:
    pytest.importorskip("vllm", reason="make install-vllm")
    tmp = tmp_path_factory.mktemp("vllm")
    return _run_engine(tmp, "first"), _run_engine(tmp, "second")


@pytest.fixture(scope="module")
def vllm_out(vllm_runs) -> dict:
    return vllm_runs[0]


@pytest.fixture(scope="module")
def hf_out() -> dict:
    from cft_lab.eval.generation import HFGenerator

    model_dir, model_cfg = _model()
    inf = _inference(backend="hf", max_new_tokens=MAX_NEW_TOKENS, batch_size=N_PROMPTS)
    with HFGenerator(model_dir, model_cfg, inf) as g:
        return json.loads(json.dumps(_scenarios(g)))


def test_greedy_equals_hf(vllm_out, hf_out):
    v, h = vllm_out["greedy"], hf_out["greedy"]
    assert len(v) == len(h) == N_PROMPTS and all(len(c) == 1 for c in v)
    same = [a == b for a, b in zip(v, h)]
    rate = sum(same) / len(same)
    print(f"\ngreedy agreement vllm vs hf: {sum(same)}/{len(same)} = {rate:.3f} (text, tokens, finish_reason)")
    assert rate >= GREEDY_AGREEMENT, [(a, b) for a, b, s in zip(v, h, same) if not s][:3]
    reasons = {c[0]["finish_reason"] for c in v}
    assert reasons == {"stop", "length"}, reasons  # the prompt set exercises both endings


def test_greedy_self_critique_traces_equal_hf(vllm_out, hf_out):
    """Two-stage and single-pass inference, greedy: every round's solution and critique, token counts and verdicts
    are the same on both backends (each round is one batched call on either)."""
    for mode in ("two_stage", "single_pass"):
        v, h = vllm_out["modes"][mode], hf_out["modes"][mode]
        assert len(v) == len(h) == 8
        assert [r["trace"] for r in v] == [r["trace"] for r in h], mode
        assert [r["outputs"] for r in v] == [r["outputs"] for r in h], mode
    rounds = [len(r["trace"][0]["rounds"]) for r in vllm_out["modes"]["two_stage"]]
    assert set(rounds) <= {1, 2} and all(
        x["critique"] for r in vllm_out["modes"]["two_stage"] for x in r["trace"][0]["rounds"]
    )


def test_finish_reason_and_token_counts(vllm_out):
    for (c,) in vllm_out["greedy"]:
        if c["finish_reason"] == "length":
            assert c["tokens"] == MAX_NEW_TOKENS
        else:
            assert c["finish_reason"] == "stop" and c["tokens"] < MAX_NEW_TOKENS and "\\boxed{" in c["text"]
        assert c["text"] == c["text"].rstrip() and "<|im_end|>" not in c["text"]


def test_greedy_n_repeats_the_greedy_answer(vllm_out):
    for comps, (ref,) in zip(vllm_out["greedy_n3"], vllm_out["greedy"]):
        assert comps == [ref] * 3


def test_stop_strings_honoured(vllm_out, hf_out):
    greedy = [c[0] for c in vllm_out["greedy"][:8]]
    for (c,), full in zip(vllm_out["stop_step2"], greedy):
        assert c["finish_reason"] == "stop" and "Step 2" not in c["text"]
        assert full["text"].startswith(c["text"]) and c["tokens"] < full["tokens"]
    for (c,), full in zip(vllm_out["stop_end_variants"], greedy):  # "\n" comes first: the first line only
        assert c["text"] == full["text"].split("\n")[0] and c["finish_reason"] == "stop"
    assert vllm_out["stop_step2"] == hf_out["stop_step2"]
    assert vllm_out["stop_end_variants"] == hf_out["stop_end_variants"]


def test_seeded_samples_do_not_depend_on_the_batch(vllm_out):
    batch = vllm_out["sample_batch"]
    assert len(batch) == 8 and all(len(c) == 3 for c in batch)
    assert vllm_out["sample_alone"] == [batch[5]]
    assert vllm_out["sample_reversed"] == batch[::-1]
    texts = {c["text"] for comps in batch for c in comps}
    assert len(texts) > 8, "T=1 samples should vary"
    assert vllm_out["sample_other_seeds"] != batch


def test_temperature_override_per_call(vllm_out):
    """The engine's config is greedy; a call at T=1 samples (above), a call at T=0.001 is all but greedy."""
    assert len(vllm_out["sample_cold"]) == len(COLD)
    for comps, (ref,) in zip(vllm_out["sample_cold"], [vllm_out["greedy"][i] for i in COLD]):
        assert comps == [ref, ref]


def test_seeded_samples_reproduce_across_engines(vllm_runs):
    first, second = vllm_runs  # two engines, the same calls in the same order: the same completions
    assert first.keys() == second.keys()
    for name in first:
        if name != "describe":
            assert first[name] == second[name], name
    assert first["sample_unseeded_1"] != first["sample_unseeded_2"]  # a fresh call draws fresh seeds


def test_describe_records_the_engine(vllm_out):
    d = vllm_out["describe"]
    assert d["backend"] == "vllm" and d["versions"]["vllm"]
    eng = d["engine"]
    assert eng["dtype"] == "float32" and eng["resolved"]["dtype"] == "float32"
    assert eng["enforce_eager"] is True and eng["kv_cache_memory_bytes"] == 2**30 and eng["seed"] == 0
    assert d["sampling"]["max_new_tokens"] == MAX_NEW_TOKENS and d["sampling"]["stop_token_ids"] == [0, 2]


def test_check_backend_accepts_an_importable_vllm():
    pytest.importorskip("vllm", reason="make install-vllm")
    from cft_lab.eval.generation import check_backend

    check_backend(_inference())  # vllm_tiny: backend vllm
    assert _inference().backend == "vllm"


def test_a_lora_cell_is_selected_and_evaluated_by_vllm(tmp_path):
    """A LoRA-trained cell end to end through ``python -m cft_lab`` with ``inference=vllm_tiny``: vLLM reads the
    checkpoints' merges (adapters alone it cannot load as a model) for selection and for the test benchmarks."""
    pytest.importorskip("vllm", reason="make install-vllm")
    from cft_lab.pipeline.store import Store
    from conftest import SMOKE, run_cli

    args = ["cft_lab", *SMOKE, "train/lora=default", "inference=vllm_tiny", "eval.limit=4", "eval.select.limit=4"]
    run_cli(args, tmp_path, timeout=900)
    (result,) = [json.loads(p.read_text()) for p in (Store(tmp_path).root / "cells").glob("*/result.json")]
    assert result["status"] == "ok" and set(result["scores"]) >= {"testbed_2step", "testbed_5step"}
    merged = sorted(Store(tmp_path).root.glob("train/*/checkpoint-*/merged/model.safetensors"))
    assert len(merged) == 2  # train.num_checkpoints=2, each merged once for selection
