"""Benchmark: does the ``openai`` teacher keep a server's capacity busy?

Starts the TEST server (:mod:`cft_lab.testing.chat_server`) in a subprocess with a fixed latency and capacity,
drives the ``openai`` teacher against it (cache in a temporary folder, ``--concurrency`` requests in flight) and
prints the requests/s achieved against the server's capacity (capacity / latency) as a percentage (goal: 95%).
A second, fully cached run shows what a resumed run costs, and a bare SDK loop (the same number of workers
calling ``client.post``, no cache, retries or budget) measured against the same server shows how much of any
shortfall is the SDK and the machine rather than the teacher.

``--rate-limit N`` makes the server a rate-limited account instead: N requests in flight, the excess answered at once
with ``429`` and ``Retry-After: --retry-after`` seconds. The teacher then has to find the limit (its adaptive window,
``cft_lab.teachers.adaptive``); the script reports the achieved rate as a share of the server's capacity (N / latency;
goal: >= 80% with 0 failed requests when N is a third of the teacher's concurrency), the limit the teacher found, and
the 429s it met. ::

    python -m cft_lab.perf.teacher [--requests 5000] [--latency 0.2] [--capacity 64] [--concurrency 64]
    python -m cft_lab.perf.teacher --rate-limit 24 --requests 2000 --no-baseline
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from cft_lab.teachers import TeacherTask, summarize
from cft_lab.teachers.openai_teacher import OpenAITeacher


def start_server(latency: float, capacity: int, retry_after: float | None = None) -> tuple[subprocess.Popen, str]:
    """The test server in a subprocess; with ``retry_after`` it rejects requests over ``capacity`` with 429."""
    reject = ["--over-capacity", "reject", "--over-capacity-retry-after", str(retry_after)] if retry_after else []
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cft_lab.testing.chat_server",
            "--port",
            "0",
            "--latency",
            str(latency),
            "--capacity",
            str(capacity),
            *reject,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    line = proc.stdout.readline()
    if "listening on " not in line:
        proc.kill()
        raise RuntimeError(f"the test server did not start: {line!r}")
    return proc, line.rsplit(" ", 1)[-1].strip()


def bare_sdk_rate(url: str, tasks: list[TeacherTask], concurrency: int) -> float:
    """Requests/s of ``concurrency`` workers calling the SDK directly with the teacher's request bodies."""
    import openai
    from openai.types.chat import ChatCompletion

    from cft_lab.prompts.teacher import default_sampling, render_messages

    bodies = [
        {
            "model": "gpt-4o-2024-11-20",
            "messages": render_messages(t.kind, t.question, t.response),
            **default_sampling(),
        }
        for t in tasks
    ]

    async def go() -> float:
        client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=30.0)
        todo = iter(bodies)

        async def worker():
            for body in todo:
                await client.post("/chat/completions", cast_to=ChatCompletion, body=body)

        t0 = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        wall = time.perf_counter() - t0
        await client.close()
        return len(bodies) / wall

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cft_lab.perf.teacher", description=__doc__.split("\n")[0])
    p.add_argument(
        "--requests",
        type=int,
        default=5000,
        help="5000 (16 s at capacity) so that connecting 64 clients and the last partial round weigh little",
    )
    p.add_argument("--latency", type=float, default=0.2, help="server seconds per request")
    p.add_argument("--capacity", type=int, default=64, help="server requests in flight")
    p.add_argument("--concurrency", type=int, default=64, help="teacher requests in flight")
    p.add_argument("--no-baseline", action="store_true", help="skip the bare SDK loop")
    p.add_argument("--rate-limit", type=int, default=None, help="server capacity; the excess gets 429 + Retry-After")
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds of a 429 (with --rate-limit)")
    a = p.parse_args(argv)
    if a.rate_limit is not None:
        a.capacity = a.rate_limit
    proc, url = start_server(a.latency, a.capacity, a.retry_after if a.rate_limit is not None else None)
    try:
        tasks = [
            TeacherTask(
                f"b{i:06d}",
                "critique",
                f"Question {i}: what is {i} * 7? " + "x" * 400,
                f"Step 1: {i} * 7 = {i * 7}. The answer is {i * 7}.",
            )
            for i in range(a.requests)
        ]
        with tempfile.TemporaryDirectory() as tmp:
            teacher = OpenAITeacher(
                "bench",
                "gpt-4o-2024-11-20",
                cache_path=Path(tmp) / "cache.sqlite",
                base_url=url,
                api_key_env=None,
                concurrency=a.concurrency,
                timeout_s=30.0,
            )
            t0 = time.perf_counter()
            results = teacher.run(tasks, progress=False)
            wall = time.perf_counter() - t0
            teacher_run = dict(teacher.last_run)
            t1 = time.perf_counter()
            again = teacher.run(tasks, progress=False)
            cached_wall = time.perf_counter() - t1
        with urllib.request.urlopen(url.removesuffix("/v1") + "/stats") as r:
            stats = json.load(r)  # before the bare SDK loop adds its own requests
        baseline = None if a.no_baseline else bare_sdk_rate(url, tasks, a.concurrency)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    s = summarize(results)
    rate, capacity_rate = a.requests / wall, a.capacity / a.latency
    bound = min(a.capacity, a.concurrency) / a.latency
    print(
        f"requests            {a.requests} (ok {s['ok']}, failed {s['failed']}); server saw {stats['total']}, "
        f"max in flight {stats['max_in_flight']}"
    )
    print(f"wall                {wall:.2f} s (ideal {a.requests / bound:.2f} s)")
    print(f"achieved            {rate:.1f} req/s")
    print(f"server capacity     {capacity_rate:.1f} req/s ({a.capacity} in flight / {a.latency} s)")
    goal = ">= 80%, 0 failed" if a.rate_limit is not None else ">= 95%"
    print(f"efficiency          {100 * rate / capacity_rate:.1f}% of capacity (goal {goal})")
    run = teacher_run
    print(
        f"rate limiting       {run['throttled_429']} answers were 429 (server: "
        f"{stats['faults'].get('over_capacity', 0)} over capacity); limit found {run['limit_found']} in flight; "
        f"final window {run['final_window']}; "
        f"teacher's max in flight {run['max_in_flight']}"
    )
    if baseline is not None:
        print(
            f"bare SDK loop       {baseline:.1f} req/s = {100 * baseline / capacity_rate:.1f}% of capacity "
            f"(teacher / bare SDK: {100 * rate / baseline:.1f}%)"
        )
    print(f"cached rerun        {cached_wall:.2f} s for {sum(r.cached for r in again)} cached results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
