"""Training MFU, training tokens/s and eval (generation) tokens/s on whatever device this machine has:

    python -m cft_lab.perf.throughput [--model tiny_math] [--seq-len 512] [--batch 4] [--steps 5] [--json OUT]
    make bench-throughput ARGS="--model qwen2_5_math_7b --seq-len 2048 --batch 2"     # on a GPU node

What the dry run's estimates assume (``conf/cluster``: ``train_mfu``, ``decode_tokens_per_s``) is measured here:

* **training**: ``--steps`` optimizer steps (AdamW on one device, the model's ``conf/model`` option; ``--dtype``:
  bf16 weights under bf16 autocast on a GPU, fp32 on CPU) on random token batches of ``--batch`` x ``--seq-len``
  after ``--warmup`` untimed steps; tokens/s over the timed steps; **MFU** = 6 x parameters x tokens/s over the
  device's peak (the definition ``cluster.train_mfu`` uses: the FLOPs of gradient checkpointing's extra forward and
  of attention are not counted). The peak is
  ``--peak-tflops``, else the dense bf16 peak of a known GPU (H100/H200 989, A100 312 TFLOPs), else (a CPU, an
  unknown GPU) a measured one: the best of a few large fp32 (CPU) or bf16 (GPU) matmuls, said as such;
* **eval**: greedy generation of ``--n-prompts`` testbed prompts of at most ``--max-new-tokens`` tokens through
  ``cft_lab.perf.generation.run_backend`` with the vllm backend when vLLM is importable on a GPU, else hf; generated
  tokens/s of one call over all prompts (model load and a warm-up call not counted). Generation uses the testbed's
  prompts and inference configs, so ``--model`` must name a testbed model for it (``--skip-eval`` otherwise).

On CPU the defaults measure the tiny testbed model (``make bases`` builds it); the figures depend on the machine and
its load (the load average is printed with them).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

#: Dense bf16 peak TFLOPs per GPU, by a substring of torch.cuda.get_device_name().
KNOWN_PEAKS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}


def _model_config(name: str):
    from omegaconf import OmegaConf

    from cft_lab.config import ModelConfig
    from cft_lab.paths import CONF_DIR

    path = CONF_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"--model {name}: no conf/model/{name}.yaml")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path)))


def measured_peak_tflops(device: str, seconds: float = 1.0) -> float:
    """The best matmul rate of this device (fp32 on CPU, bf16 on a GPU), in TFLOPs."""
    import torch

    n = 2048 if device == "cuda" else 512
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(8):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 8 * 2 * n**3 / (time.perf_counter() - t0) / 1e12)
    return best


def peak_tflops(device: str, given: float | None) -> tuple[float, str]:
    import torch

    if given:
        return given, "--peak-tflops"
    if device == "cuda":
        name = torch.cuda.get_device_name()
        for key, value in KNOWN_PEAKS.items():
            if key in name:
                return value, f"dense bf16 peak of {key}"
    return measured_peak_tflops(device), f"measured {'bf16' if device == 'cuda' else 'fp32'} matmul peak"


def bench_training(
    model_name: str, device: str, seq_len: int, batch: int, steps: int, warmup: int, ckpt: bool, dtype: str
) -> dict:
    import torch

    from cft_lab.train.modeling import load_model, model_path

    model_cfg = _model_config(model_name)
    model = load_model(model_path(model_cfg), model_cfg, model_cfg.hub_revision(), dtype=dtype).to(device)
    if ckpt:
        model.gradient_checkpointing_enable()
    model.train()
    params = sum(p.numel() for p in model.parameters())
    vocab = model.config.vocab_size
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, vocab, (batch, seq_len), generator=gen) for _ in range(2)]
    cuda = device == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def step(k: int) -> float:
        ids = batches[k % 2].to(device)
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    for k in range(warmup):
        step(k)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(steps):
        loss = step(k)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    tokens = steps * batch * seq_len
    out = {
        "params": params,
        "seq_len": seq_len,
        "batch": batch,
        "steps": steps,
        "gradient_checkpointing": ckpt,
        "dtype": dtype,
        "seconds": round(elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 1),
        "model_tflops": round(6 * params * tokens / elapsed / 1e12, 6),
        "last_loss": round(loss, 4),
    }
    if cuda:
        out["max_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 2)
    return out  # the model and optimizer go with this frame (before the eval part loads its own)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m cft_lab.perf.throughput", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny_math", help="a conf/model option (a testbed model for the eval part)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seq-len", type=int, default=None, help="default 2048 on a GPU (the paper's cutoff), 256 on CPU")
    ap.add_argument("--batch", type=int, default=None, help="sequences per step; default 4 on a GPU, 4 on CPU")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--gradient-checkpointing", action="store_true", help="as train=paper trains")
    ap.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16"],
        help="weights and optimizer state: float32 on CPU (as the trainer without DeepSpeed), bfloat16 on a GPU by "
        "default (a 7B model's fp32 AdamW state does not fit one 80 GB GPU; ZeRO-3 shards it over 8 in train=paper)",
    )
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's peak for MFU (else known/measured)")
    ap.add_argument("--n-prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--eval-backend", default="auto", choices=["auto", "hf", "vllm"])
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

    import importlib.util

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} torch threads)"
    seq_len = args.seq_len or (2048 if device == "cuda" else 256)
    batch = args.batch or 4
    load_before = os.getloadavg()
    peak, peak_why = peak_tflops(device, args.peak_tflops)
    dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    ckpt = args.gradient_checkpointing
    train = bench_training(args.model, device, seq_len, batch, args.steps, args.warmup, ckpt, dtype)
    train["mfu"] = round(train["model_tflops"] / peak, 4)
    summary: dict = {"device": name, "model": args.model, "peak_tflops": round(peak, 4), "peak_from": peak_why}
    summary["train"] = train
    print(f"device: {name}; model {args.model} ({train['params'] / 1e6:.1f}M parameters)")
    print(
        f"train ({dtype}): {batch} x {seq_len} tokens per step, {args.steps} steps in {train['seconds']:.2f} s: "
        f"{train['tokens_per_s']:.1f} tokens/s, {train['model_tflops']:.4g} TFLOPs (6 x params x tokens/s), "
        f"MFU {100 * train['mfu']:.1f}% of {peak:.4g} TFLOPs ({peak_why})"
        + (f", peak memory {train['max_memory_gb']} GB" if "max_memory_gb" in train else "")
    )
    if not args.skip_eval:
        from cft_lab.perf.generation import _configs, bench_prompts, run_backend

        backend = args.eval_backend
        if backend == "auto":
            backend = "vllm" if device == "cuda" and importlib.util.find_spec("vllm") is not None else "hf"
        prompts = bench_prompts(args.n_prompts, _configs(args.model, "hf", 1, 1)[0].eval_template)
        ev = run_backend(backend, args.model, prompts, args.max_new_tokens, batch_size=args.n_prompts)
        ev.pop("completions")
        summary["eval"] = ev
        print(
            f"eval ({backend}): {ev['prompts']} prompts, {ev['tokens']} tokens generated in {ev['generate_s']:.2f} s: "
            f"{ev['tokens_per_s']:.1f} tokens/s ({ev['prompts_per_s']:.2f} prompts/s; model load {ev['start_s']} s)"
        )
    load_after = os.getloadavg()
    summary["load_avg"] = [round(load_before[0], 2), round(load_after[0], 2)]
    print(f"cpus {os.cpu_count()}, load average {load_before[0]:.2f} before / {load_after[0]:.2f} after")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
