"""The openai teacher at API scale, over real HTTP on loopback: a rate-limited server's 429s are back-pressure (the
adaptive window finds the limit, no request fails), patience bounds them, an unreachable server stops the run early
naming its host, and two runs sharing one request cache (two real processes) never ask the same key twice."""

from __future__ import annotations

import json
import socket
import time

import pytest

from cft_lab.teachers.adaptive import AdaptiveLimit
from cft_lab.teachers.cache import RequestCache
from cft_lab.teachers.retry import TeacherFatalError
from cft_lab.testing.chat_server import FaultPlan
from test_teachers import KEY_ENV, MODEL, _cli, _env, _write_tasks, api_key, make_tasks, make_teacher, server, stored

__all__ = ["api_key", "server"]  # fixtures used by name


def test_a_rate_limited_server_is_kept_busy_with_no_failed_request(server, tmp_path, api_key):
    # capacity 4, the excess answered 429 with Retry-After: 0.1 s; the teacher starts at 12 in flight and may
    # try each request only once apart from 429s (max_attempts=1): a 429 must never count as a failed attempt
    srv = server(latency=0.05, capacity=4, over_capacity="reject", over_capacity_retry_after=0.1)
    teacher = make_teacher(srv, tmp_path, concurrency=12, max_attempts=1)
    res = teacher.run(make_tasks(120), progress=False)
    assert [r.status for r in res] == ["ok"] * 120 and srv.max_in_flight <= 4
    assert set(srv.ok_by_key.values()) == {1} and len(srv.ok_by_key) == 120
    run = teacher.last_run
    assert run["throttled_429"] == srv.faults_seen["over_capacity"] > 0 and run["failed"] == 0
    assert 3 <= run["limit_found"] <= 6 and run["window_decreases"] >= 1
    assert run["throttled_429"] < 120  # the window shrank: most requests were not turned away
    assert run["achieved_rps"] > 0.5 * 4 / 0.05, run  # at least half the server's capacity even on 2 busy cores


def test_429_back_pressure_is_bounded_by_the_patience_not_the_attempts(server, tmp_path, api_key):
    srv = server(faults=FaultPlan(per_key=["429"] * 50, retry_after=0.1))
    t0 = time.monotonic()
    res = make_teacher(srv, tmp_path, max_attempts=2, rate_limit_patience_s=0.6).run(make_tasks(2), progress=False)
    assert all(r.status == "failed" and "rate-limited for 0.6 s" in r.error for r in res)
    assert all(r.attempts >= 4 for r in res)  # well past max_attempts=2: 429s are not failed attempts
    assert 0.5 <= time.monotonic() - t0 < 5


def test_x_ratelimit_headers_hold_new_requests_until_the_reset():
    limit = AdaptiveLimit(8)
    limit.on_answer({"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "0",
                     "x-ratelimit-reset-requests": "250ms"})  # fmt: skip
    assert limit.declared_limit == 500 and limit.hold_until - time.monotonic() > 0.2

    async def first_send() -> float:
        t0 = time.monotonic()
        await limit.acquire()
        return time.monotonic() - t0

    import asyncio

    assert 0.2 <= asyncio.run(first_send()) < 1.0


def test_an_unreachable_server_stops_the_run_early_naming_the_host(tmp_path, api_key):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    class Closed:
        url = f"http://127.0.0.1:{port}/v1"

    teacher = make_teacher(Closed, tmp_path, concurrency=4, max_attempts=50, connect_grace_s=0.3, backoff_max_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(TeacherFatalError) as err:
        teacher.run(make_tasks(200), progress=False)
    assert time.monotonic() - t0 < 10  # not 200 requests x 50 attempts
    assert f"cannot connect to 127.0.0.1:{port}" in str(err.value) and "teacher.base_url" in str(err.value)
    assert stored(tmp_path / "cache.sqlite") == {}  # not the items' fault: nothing stored as failed
    with RequestCache(tmp_path / "cache.sqlite") as c:
        assert c.claims() == {}  # and no claim left behind to hold another run back


def test_two_processes_on_one_cache_ask_every_key_exactly_once(server, tmp_path, api_key):
    """Two real runs of the teacher CLI on the same 60 tasks in the same order (maximal contention) and one cache:
    the loopback server counts requests per key, and every key is asked once."""
    srv = server(latency=0.03)
    cache = tmp_path / "cache.sqlite"
    tasks = _write_tasks(tmp_path / "tasks.jsonl", make_tasks(60))
    procs = [
        _cli(
            [
                "--tasks",
                str(tasks),
                "--cache",
                str(cache),
                "--out",
                str(tmp_path / f"{n}.out"),
                "--model",
                MODEL,
                "--base-url",
                srv.url,
                "--api-key-env",
                KEY_ENV,
                "--concurrency",
                "6",
                "--no-progress",
            ],
            _env(api_key),
        )  # fmt: skip
        for n in ("a", "b")
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    assert len(srv.requests_by_key) == 60 and set(srv.requests_by_key.values()) == {1}
    assert sum(o["run"]["asked"] for o in outs) == 60  # each key asked by exactly one of the two runs
    assert sum(o["run"]["answered_by_another_run"] for o in outs) + sum(o["run"]["cached_keys"] for o in outs) == 60
    for n in ("a", "b"):
        lines = [json.loads(x) for x in (tmp_path / f"{n}.out").read_text().splitlines()]
        assert len(lines) == 60 and {x["status"] for x in lines} == {"ok"}
    with RequestCache(cache) as c:
        assert c.claims() == {} and c.integrity_ok()


def test_a_claim_held_elsewhere_is_waited_for_then_taken_over_when_it_expires(server, tmp_path, api_key):
    srv = server()
    teacher = make_teacher(srv, tmp_path, claim_poll_s=0.05)
    tasks = make_tasks(3)
    held = teacher.request_for(tasks[0])[0]
    with RequestCache(tmp_path / "cache.sqlite") as c:  # a run on another host claimed one key for 0.6 s
        assert c.claim(held, "otherhost:1:abc", ttl_s=0.6) == "mine"
    t0 = time.monotonic()
    res = teacher.run(tasks, progress=False)
    assert [r.status for r in res] == ["ok"] * 3 and time.monotonic() - t0 >= 0.55
    assert set(srv.requests_by_key.values()) == {1} and len(srv.requests_by_key) == 3
