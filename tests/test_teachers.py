"""The teacher side over real HTTP: the fault-injecting loopback server, the openai teacher, its SQLite cache,
retries, budget, key hygiene, a SIGKILLed subprocess that resumes, and the replay / testbed teachers."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cft_lab.prompts.teacher import TEMPLATE_HASHES, default_sampling, render_messages
from cft_lab.teachers import TeacherTask, summarize
from cft_lab.teachers.cache import RequestCache
from cft_lab.teachers.openai_teacher import OpenAITeacher
from cft_lab.teachers.pricing import PriceTable
from cft_lab.teachers.replay import ReplayTeacher
from cft_lab.teachers.retry import TeacherFatalError
from cft_lab.teachers.testbed import TestbedTeacher
from cft_lab.testing.chat_server import ChatServer, FaultPlan

REPO = Path(__file__).resolve().parents[1]
MODEL = "gpt-4o-2024-11-20"
KEY_ENV = "CFT_LAB_TEST_TEACHER_KEY"


@pytest.fixture
def api_key(monkeypatch) -> str:
    key = "sk-cftlab-FAKE-" + uuid.uuid4().hex
    monkeypatch.setenv(KEY_ENV, key)
    return key


@pytest.fixture
def server():
    started = []

    def start(**kw) -> ChatServer:
        s = ChatServer(**kw).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def make_teacher(srv: ChatServer, tmp_path: Path, **kw) -> OpenAITeacher:
    opts = dict(
        cache_path=tmp_path / "cache.sqlite",
        base_url=srv.url,
        api_key_env=KEY_ENV,
        concurrency=8,
        timeout_s=2.0,
        max_attempts=4,
        backoff_initial_s=0.02,
        backoff_max_s=0.2,
    )
    opts.update(kw)
    return OpenAITeacher("test", opts.pop("model", MODEL), **opts)


def make_tasks(n: int, kind: str = "critique", start: int = 0) -> list[TeacherTask]:
    return [
        TeacherTask(f"r{i:04d}", kind, f"What is {i} + {i}?", None if kind == "answer" else f"It is {2 * i}.")
        for i in range(start, start + n)
    ]


def stored(path: Path) -> dict[str, tuple]:
    with sqlite3.connect(path) as db:
        return {k: (s, a) for k, s, a in db.execute("SELECT key, status, attempts FROM responses")}


# --------------------------------------------------------------------------- prompts and prices
def test_v1_prompts_are_the_paper_texts_and_pinned():
    crit = render_messages("critique", "Q?", "Y.")
    assert crit == [
        {
            "role": "system",
            "content": "You are a science expert. A student is trying to solve the a question, please "
            "explain briefly whether his solution is correct or not. Finally, conclude your judgement with "
            "'Conclusion: right/wrong [END]'.",
        },
        {"role": "user", "content": "\nQuestion: Q?\n\nSolution: Y.\n"},
    ]
    ans = render_messages("answer", "Q?", None)
    assert ans[0]["content"].endswith("conclude your answer with 'Answer: [YOUR ANSWER]' in the end.")
    assert ans[1]["content"] == "\nQuestion: Q?\n"
    assert default_sampling("v1") == {"temperature": 0.3, "top_p": 0.95, "max_tokens": 3200, "n": 1}
    # editing v1 in place changes these: add a v2 instead
    assert TEMPLATE_HASHES == {"critique/v1": "d80753b3e6f4c785", "answer/v1": "2747b19df6fe9d1c"}
    with pytest.raises(ValueError, match="no teacher prompt version 'v9'"):
        render_messages("critique", "q", "y", version="v9")
    with pytest.raises(ValueError, match="needs the response"):
        render_messages("critique", "q", None)


def test_prices_per_model_overrides_and_unknown_warning(caplog):
    t = PriceTable()
    assert t.cost("gpt-4o-2024-11-20", 1000, 1000) == pytest.approx(0.0125)
    assert t.cost("gpt-4o-2024-08-06", 1000, 1000) == pytest.approx(0.0125)
    assert t.cost("gpt-4o-mini", 1000, 1000) == pytest.approx(0.00075)  # not GPT-4o's price (the paper script's bug)
    assert t.cost("gpt-4o-2024-11-20", 1000, 0, cached_tokens=1000) == pytest.approx(0.00125)
    t2 = t.with_overrides({"my-model": {"input": 1.0, "output": 2.0}, "gpt-4o-mini": {"input": 9, "output": 9}})
    assert t2.cost("my-model", 10**6, 10**6) == pytest.approx(3.0)
    assert t2.cost("gpt-4o-mini", 10**6, 0) == pytest.approx(9.0) and t.cost("gpt-4o-mini", 10**6, 0) == 0.15
    with pytest.raises(ValueError, match="needs input and output"):
        t.with_overrides({"x": {"input": 1.0}})
    with caplog.at_level(logging.WARNING, logger="cft_lab.teachers.pricing"):
        assert t.cost("mystery-model", 10, 10) is None
        assert t.cost("mystery-model", 10, 10) is None
    assert [r.getMessage().count("mystery-model") > 0 for r in caplog.records] == [True]  # warned once


def test_unknown_model_costs_none_with_warning_and_refuses_a_budget(server, tmp_path, api_key, caplog):
    srv = server()
    with caplog.at_level(logging.WARNING):
        teacher = make_teacher(srv, tmp_path, model="my-local-model")
    assert any("my-local-model" in r.getMessage() and "no price" in r.getMessage() for r in caplog.records)
    res = teacher.run(make_tasks(3), progress=False)
    assert [r.status for r in res] == ["ok"] * 3 and all(r.cost_usd is None for r in res)
    assert summarize(res)["cost_usd"] is None
    with pytest.raises(ValueError, match="has no price"):
        make_teacher(srv, tmp_path, model="my-local-model", budget_usd=1.0)


# --------------------------------------------------------------------------- happy path and cache
def test_happy_path_every_key_asked_once_and_rerun_is_cached(server, tmp_path, api_key):
    srv = server(latency=0.05, model_alias={MODEL: MODEL}, api_key=api_key)
    tasks = make_tasks(12) + make_tasks(6, kind="answer")
    teacher = make_teacher(srv, tmp_path)
    res = teacher.run(tasks, progress=False)
    assert [r.record_id for r in res] == [t.record_id for t in tasks]
    assert all(r.status == "ok" and not r.cached and r.attempts == 1 for r in res)
    assert all(r.text.endswith(("Conclusion: right [END]", "Conclusion: wrong [END]")) for r in res[:12])
    assert all("\nAnswer: " in r.text for r in res[12:])
    assert {r.model for r in res} == {MODEL}
    assert all(r.cost_usd == pytest.approx((r.prompt_tokens * 2.5 + r.completion_tokens * 10) / 1e6) for r in res)
    keys = {r.cache_key for r in res}
    assert len(keys) == 18 and srv.requests_by_key.keys() == keys and set(srv.requests_by_key.values()) == {1}
    assert srv.max_in_flight <= 8
    again = make_teacher(srv, tmp_path).run(tasks, progress=False)
    assert srv.total == 18 and all(r.cached for r in again)
    assert [(r.text, r.cost_usd) for r in again] == [(r.text, r.cost_usd) for r in res]
    assert summarize(again)["cost_usd_this_run"] == 0 and summarize(again)["cost_usd"] > 0


def test_concurrency_is_bounded_and_used(server, tmp_path, api_key):
    srv = server(latency=0.1)
    make_teacher(srv, tmp_path, concurrency=6).run(make_tasks(30), progress=False)
    assert srv.max_in_flight == 6


def test_over_capacity_429s_are_waited_out(server, tmp_path, api_key):
    srv = server(latency=0.05, capacity=2, over_capacity="reject")  # 429 with retry-after-ms: 50 over capacity
    res = make_teacher(srv, tmp_path, concurrency=6, max_attempts=20).run(make_tasks(12), progress=False)
    assert all(r.status == "ok" for r in res) and srv.max_in_flight <= 2
    assert srv.faults_seen["over_capacity"] > 0 and sum(srv.ok_by_key.values()) == 12


def test_duplicate_tasks_share_one_request(server, tmp_path, api_key):
    srv = server()
    a, b = TeacherTask("a", "critique", "q", "y"), TeacherTask("b", "critique", "q", "y")
    res = make_teacher(srv, tmp_path).run([a, b], progress=False)
    assert srv.total == 1 and res[0].cache_key == res[1].cache_key and res[0].text == res[1].text
    assert [r.cached for r in res] == [False, True]  # the cost is counted once


def test_reported_snapshot_is_recorded_and_priced(server, tmp_path, api_key):
    srv = server(model_alias={"gpt-4o-mini": "gpt-4o-mini-2024-07-18"})
    res = make_teacher(srv, tmp_path, model="gpt-4o-mini").run(make_tasks(2), progress=False)
    assert {r.model for r in res} == {"gpt-4o-mini-2024-07-18"}
    assert all(r.cost_usd == pytest.approx((r.prompt_tokens * 0.15 + r.completion_tokens * 0.6) / 1e6) for r in res)


# --------------------------------------------------------------------------- faults
@pytest.mark.parametrize(
    "headers,expect_s", [({"retry_after": 1.0}, 1.0), ({"retry_after": None, "retry_after_ms": 400.0}, 0.4)]
)
def test_429_retry_after_is_honoured(server, tmp_path, api_key, headers, expect_s):
    srv = server(faults=FaultPlan(per_key=["429", "ok"], **headers))
    res = make_teacher(srv, tmp_path, backoff_initial_s=0.01).run(make_tasks(3), progress=False)
    assert [(r.status, r.attempts) for r in res] == [("ok", 2)] * 3
    gaps = [t[1] - t[0] for t in srv.arrivals.values()]
    assert len(gaps) == 3 and min(gaps) >= expect_s * 0.98  # the backoff alone would wait ~0.01-0.02 s
    assert max(gaps) < expect_s * 1.1 + 0.5


def test_a_retry_after_beyond_the_maximum_fails_the_row(server, tmp_path, api_key):
    srv = server(faults=FaultPlan(per_key=["429", "ok"], retry_after=900.0))
    res = make_teacher(srv, tmp_path, max_retry_after_s=5.0).run(make_tasks(1), progress=False)
    assert (res[0].status, res[0].attempts) == ("failed", 1) and "more than max_retry_after_s" in res[0].error


def test_server_errors_are_retried(server, tmp_path, api_key):
    srv = server(faults=FaultPlan(per_key=["500", "503", "ok"], retry_after=None))
    res = make_teacher(srv, tmp_path).run(make_tasks(4), progress=False)
    assert [(r.status, r.attempts) for r in res] == [("ok", 3)] * 4
    assert set(srv.requests_by_key.values()) == {3}


def test_timeouts_are_retried_then_recorded_as_failed(server, tmp_path, api_key):
    srv = server(faults=FaultPlan(per_key=["hang", "ok"], hang_s=1.5))
    res = make_teacher(srv, tmp_path, timeout_s=0.4).run(make_tasks(2), progress=False)
    assert [(r.status, r.attempts) for r in res] == [("ok", 2)] * 2
    srv2 = server(faults=FaultPlan(per_key=["hang"] * 3, hang_s=1.5))
    t0 = time.monotonic()
    res = make_teacher(srv2, tmp_path / "b", timeout_s=0.4, max_attempts=3).run(make_tasks(2), progress=False)
    assert time.monotonic() - t0 >= 3 * 0.4
    assert [(r.status, r.attempts) for r in res] == [("failed", 3)] * 2
    assert all("timed out" in r.error for r in res)
    assert stored(tmp_path / "b" / "cache.sqlite") == {r.cache_key: ("failed", 3) for r in res}


@pytest.mark.parametrize(
    "fault,message",
    [
        ("malformed_json", "not valid JSON"),
        ("not_json", "not valid JSON"),
        ("missing_choices", "no choices"),
        ("empty_content", "empty content"),
        ("disconnect", "APIConnectionError"),
    ],
)
def test_malformed_bodies_are_retried_then_failed(server, tmp_path, api_key, fault, message):
    srv = server(faults=FaultPlan(per_key=[fault, "ok"]))
    res = make_teacher(srv, tmp_path).run(make_tasks(2), progress=False)
    assert [(r.status, r.attempts) for r in res] == [("ok", 2)] * 2
    srv2 = server(faults=FaultPlan(per_key=[fault] * 3))
    res = make_teacher(srv2, tmp_path / "b", max_attempts=3).run(make_tasks(2), progress=False)
    assert [(r.status, r.attempts) for r in res] == [("failed", 3)] * 2
    assert all(message in r.error for r in res), [r.error for r in res]


def test_bad_request_fails_at_once(server, tmp_path, api_key):
    srv = server(faults=FaultPlan(per_key=["400"]))
    res = make_teacher(srv, tmp_path).run(make_tasks(2), progress=False)
    assert [(r.status, r.attempts) for r in res] == [("failed", 1)] * 2 and "HTTP 400" in res[0].error
    assert srv.total == 2


def test_wrong_key_is_fatal_and_never_echoed(server, tmp_path, api_key):
    srv = server(api_key="sk-the-right-one")
    teacher = make_teacher(srv, tmp_path)
    with pytest.raises(TeacherFatalError) as err:
        teacher.run(make_tasks(20), progress=False)
    assert "HTTP 401" in str(err.value) and api_key not in str(err.value) and "[REDACTED]" in str(err.value)
    assert srv.total <= 8  # stopped submitting after the first 401s (at most one round of in-flight requests)
    assert stored(tmp_path / "cache.sqlite") == {}  # not the items' fault: nothing stored as failed
    assert api_key not in repr(teacher) and api_key not in json.dumps(teacher.describe())


def test_every_task_is_one_row_and_retry_failed_reasks_only_failures(server, tmp_path, api_key):
    srv = server(faults=FaultPlan(rates={"500": 0.5}, seed=3, retry_after=None))
    tasks = make_tasks(40)
    res = make_teacher(srv, tmp_path, max_attempts=2).run(tasks, progress=False)
    failed = {r.cache_key for r in res if r.status == "failed"}
    assert 0 < len(failed) < 40 and all(r.status in ("ok", "failed") for r in res)
    rows = stored(tmp_path / "cache.sqlite")
    assert len(rows) == 40 and {k for k, (s, _) in rows.items() if s == "failed"} == failed
    total = srv.total
    res2 = make_teacher(srv, tmp_path).run(tasks, progress=False)  # stored failures are not re-asked
    assert srv.total == total and [r.status for r in res2] == [r.status for r in res]
    before = dict(srv.requests_by_key)
    srv.faults = FaultPlan()
    res3 = make_teacher(srv, tmp_path).run(tasks, retry_failed=True, progress=False)
    reasked = {k for k, n in srv.requests_by_key.items() if n != before.get(k, 0)}
    assert reasked == failed and all(srv.requests_by_key[k] == before[k] + 1 for k in failed)
    assert all(r.status == "ok" for r in res3)
    assert all(r.attempts == 3 for r in res3 if r.cache_key in failed)  # 2 failed attempts + 1, summed
    assert [r.cached for r in res3] == [r.cache_key not in failed for r in res3]


def test_cache_keeps_ok_rows_and_survives_two_writers(tmp_path):
    from cft_lab.teachers.cache import CacheRow

    a, b = RequestCache(tmp_path / "c.sqlite"), RequestCache(tmp_path / "c.sqlite")
    a.put(CacheRow("k1", "ok", text="first", attempts=1))
    b.put(CacheRow("k1", "ok", text="second", attempts=1))  # a concurrent run's later answer: the first stays
    b.put(CacheRow("k2", "failed", error="e", attempts=2))
    assert a.get_many(["k1", "k2", "k3"])["k1"].text == "first" and set(a.get_many(["k1", "k2", "k3"])) == {"k1", "k2"}
    assert a.counts() == {"ok": 1, "failed": 1} and a.integrity_ok()
    a.close(), b.close()


# --------------------------------------------------------------------------- budget
def test_budget_cap_stops_cleanly(server, tmp_path, api_key):
    srv = server(latency=0.05, usage_tokens=(1000, 1000))  # $0.0125 a request at GPT-4o-1120 prices
    tasks = make_tasks(30)
    res = make_teacher(srv, tmp_path, concurrency=4, budget_usd=0.1).run(tasks, progress=False)
    s = summarize(res)
    assert s["failed"] == 0 and s["ok"] + s["budget_exhausted"] == 30 and s["budget_exhausted"] > 0
    assert s["cost_usd"] <= 0.1 + 1e-9 and s["cost_usd"] >= 0.1 - 0.0125 - 1e-9, s
    assert all(r.error and "budget" in r.error for r in res if r.status == "budget_exhausted")
    assert len(stored(tmp_path / "cache.sqlite")) == s["ok"] == srv.total  # never-asked tasks are not stored
    more = make_teacher(srv, tmp_path, concurrency=4, budget_usd=1.0).run(tasks, progress=False)
    assert all(r.status == "ok" for r in more) and srv.total == 30 and set(srv.requests_by_key.values()) == {1}


# --------------------------------------------------------------------------- subprocesses
def _cli(args: list[str], env: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cft_lab.teachers.run", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _env(api_key: str) -> dict:
    return {**os.environ, KEY_ENV: api_key, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _write_tasks(path: Path, tasks: list[TeacherTask]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"record_id": t.record_id, "kind": t.kind, "question": t.question, "response": t.response})
            + "\n"
            for t in tasks
        )
    )
    return path


def test_sigkilled_run_resumes_without_loss_or_duplicates(server, tmp_path, api_key):
    srv = server(latency=0.1)
    tasks = make_tasks(80)
    tasks_file, cache = _write_tasks(tmp_path / "tasks.jsonl", tasks), tmp_path / "cache.sqlite"
    args = [
        "--tasks",
        str(tasks_file),
        "--cache",
        str(cache),
        "--out",
        str(tmp_path / "out.jsonl"),
        "--model",
        MODEL,
        "--base-url",
        srv.url,
        "--api-key-env",
        KEY_ENV,
        "--concurrency",
        "4",
        "--no-progress",
    ]
    proc = _cli(args, _env(api_key))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if cache.exists():
            try:
                if sum(s == "ok" for s, _ in stored(cache).values()) >= 12:
                    break
            except sqlite3.OperationalError:  # the table is not created yet
                pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.3)  # let the server finish the handlers of the killed client's requests
    before_keys = set(stored(cache))
    asked_at_kill = set(srv.requests_by_key)
    in_flight_at_kill = asked_at_kill - before_keys
    assert 12 <= len(before_keys) < 80 and len(in_flight_at_kill) <= 4
    proc = _cli(args, _env(api_key))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["record_id"] for x in lines] == [t.record_id for t in tasks] and {x["status"] for x in lines} == {"ok"}
    rows = stored(cache)
    assert len(rows) == 80 and {s for s, _ in rows.values()} == {"ok"}
    for key, n in srv.requests_by_key.items():
        assert n == 1 or (key in in_flight_at_kill and n == 2), (key, n)
    assert all(srv.requests_by_key[k] == 1 for k in before_keys)
    assert json.loads(out)["run"]["asked"] == 80 - len(before_keys)
    with RequestCache(cache) as c:
        assert c.integrity_ok()


def test_two_runs_on_one_cache_do_not_corrupt_it(server, tmp_path, api_key):
    srv = server(latency=0.03)
    cache = tmp_path / "cache.sqlite"
    procs = []
    for name, tasks in (("a", make_tasks(40)), ("b", make_tasks(40, start=20))):
        f = _write_tasks(tmp_path / f"{name}.jsonl", tasks)
        procs.append(
            _cli(
                [
                    "--tasks",
                    str(f),
                    "--cache",
                    str(cache),
                    "--out",
                    str(tmp_path / f"{name}.out"),
                    "--model",
                    MODEL,
                    "--base-url",
                    srv.url,
                    "--api-key-env",
                    KEY_ENV,
                    "--concurrency",
                    "4",
                    "--no-progress",
                ],
                _env(api_key),
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    rows = stored(cache)
    assert len(rows) == 60 and {s for s, _ in rows.values()} == {"ok"}
    with RequestCache(cache) as c:
        assert c.integrity_ok()
    for name in ("a", "b"):
        lines = [json.loads(x) for x in (tmp_path / f"{name}.out").read_text().splitlines()]
        assert len(lines) == 40 and {x["status"] for x in lines} == {"ok"}


def test_api_key_reaches_no_file_log_or_error(server, tmp_path, api_key):
    srv = server(faults=FaultPlan(rates={"500": 0.3, "400": 0.1, "malformed_json": 0.1}, seed=1), api_key=api_key)
    tasks_file = _write_tasks(tmp_path / "tasks.jsonl", make_tasks(20))
    args = [
        "--tasks",
        str(tasks_file),
        "--cache",
        str(tmp_path / "cache.sqlite"),
        "--out",
        str(tmp_path / "o.jsonl"),
        "--model",
        MODEL,
        "--base-url",
        srv.url,
        "--api-key-env",
        KEY_ENV,
        "--max-attempts",
        "2",
        "--backoff-initial",
        "0.01",
        "--log-level",
        "DEBUG",
    ]
    proc = _cli(args, _env(api_key))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = json.loads(out)["summary"]
    assert summary["failed"] > 0 and summary["ok"] > 0  # errors were produced, logged and stored
    assert "HTTP 500" in err or "HTTP 400" in err
    other = server(api_key="sk-cftlab-the-other-key")  # answers 401 and echoes the key it was sent
    bad = _cli(
        [
            *args[:2],
            "--out",
            str(tmp_path / "bad.jsonl"),
            "--cache",
            str(tmp_path / "bad.sqlite"),
            "--model",
            MODEL,
            "--base-url",
            other.url,
            "--api-key-env",
            KEY_ENV,
            "--log-level",
            "DEBUG",
        ],
        _env(api_key),
    )
    bad_out, bad_err = bad.communicate(timeout=60)
    assert bad.returncode == 3 and "HTTP 401" in bad_err and "[REDACTED]" in bad_err, bad_err
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert (tmp_path / "cache.sqlite").exists() and (tmp_path / "o.jsonl").exists()
    for text in (out, err, bad_out, bad_err):
        assert api_key not in text
    assert api_key.encode() not in written
    assert "[REDACTED]" not in err  # nothing needed redacting in the good run: the key was never in a message


# --------------------------------------------------------------------------- replay and testbed teachers
def test_replay_teacher():
    t = ReplayTeacher({"wi-1": "ok.\nConclusion: wrong [END]"})
    res = t.run(
        [
            TeacherTask("wi-1", "critique", "q", "y"),
            TeacherTask("wi-2", "critique", "q", "y"),
            TeacherTask("wi-1", "answer", "q", None),
        ]
    )
    assert [r.status for r in res] == ["ok", "failed", "failed"]
    assert res[0].text.endswith("wrong [END]") and res[0].cost_usd == 0.0
    assert "wi-2" in res[1].error and "answer" in res[2].error


def test_testbed_teacher_matches_the_data_stage_calls():
    from cft_lab.testbed import noisy, problems
    from cft_lab.testbed import teacher as tb

    items = problems.generate("train", 12, seed=0)
    resp = {p.id: noisy.noisy_solve(p, seed=0, error_rate=0.5).text for p in items}
    weak = tb.TeacherStrength(miss_rate=0.25, false_alarm_rate=0.1, vague_rate=0.5, solution_error_rate=0.15)
    t = TestbedTeacher({p.id: p for p in items}, strength=weak, seed=3)
    tasks = [TeacherTask(p.id, "critique", p.question, resp[p.id]) for p in items]
    tasks += [TeacherTask(p.id, "answer", p.question, None) for p in items]
    res = t.run(tasks)
    assert [r.text for r in res[:12]] == [tb.critique(p, resp[p.id], weak, seed=3).text for p in items]
    assert [r.text for r in res[12:]] == [tb.teacher_solution(p, weak, seed=3) for p in items]
    via_meta = TestbedTeacher(strength=weak, seed=3).run(
        [TeacherTask("x", "answer", "q", None, meta={"problem": items[0]})]
    )
    assert via_meta[0].text == res[12].text
    missing = TestbedTeacher().run([TeacherTask("nope", "critique", "q", "y")])
    assert missing[0].status == "failed" and "nope" in missing[0].error
