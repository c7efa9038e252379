"""Batch mode of the openai teacher against the loopback server's Files and Batch APIs (real HTTP, the official SDK):
results merged into the same request cache at the Batch price, an expired batch's unrun requests resubmitted, a
partially failed batch's failures stored, a failed validation fatal, and a run that stops while its batch runs
resumed by a new process that polls the stored batch instead of paying again."""

from __future__ import annotations

import json
import sqlite3

import pytest

from cft_lab.teachers import summarize
from cft_lab.teachers.batch import BatchPending
from cft_lab.teachers.cache import RequestCache
from cft_lab.teachers.retry import TeacherFatalError
from cft_lab.testing.chat_server import FaultPlan
from test_teachers import KEY_ENV, MODEL, _cli, _env, _write_tasks, api_key, make_tasks, make_teacher, server, stored

__all__ = ["api_key", "server"]  # fixtures used by name


def batch_teacher(srv, tmp_path, **kw):
    return make_teacher(srv, tmp_path, mode="batch", batch_poll_s=0.05, **kw)


def test_batch_mode_merges_into_the_cache_at_batch_prices(server, tmp_path, api_key):
    srv = server()
    srv.batch.latency_s = 0.1
    tasks = make_tasks(10) + make_tasks(3, kind="answer")
    teacher = batch_teacher(srv, tmp_path)
    res = teacher.run(tasks, progress=False)
    assert [r.status for r in res] == ["ok"] * 13 and srv.batch.created == 1 and len(srv.batch.files) == 2
    assert all(r.cost_usd == pytest.approx((r.prompt_tokens * 2.5 + r.completion_tokens * 10) / 2e6) for r in res)
    assert all(r.text.endswith(("right [END]", "wrong [END]")) for r in res[:10])
    assert (
        teacher.last_run["mode"] == "batch" and teacher.last_run["ok"] == 13 and len(teacher.last_run["batches"]) == 1
    )
    assert set(srv.requests_by_key.values()) == {1}
    rows = stored(tmp_path / "cache.sqlite")
    assert len(rows) == 13 and {s for s, _ in rows.values()} == {"ok"}
    again = make_teacher(srv, tmp_path).run(tasks, progress=False)  # the same cache serves the sync mode
    assert all(r.cached for r in again) and srv.batch.created == 1 and summarize(again)["cost_usd_this_run"] == 0


def test_an_expired_batch_is_resubmitted_for_the_requests_it_did_not_run(server, tmp_path, api_key):
    srv = server()
    srv.batch.latency_s, srv.batch.expire_after = 0.05, 4  # every batch runs 4 requests, then expires
    teacher = batch_teacher(srv, tmp_path)
    res = teacher.run(make_tasks(10), progress=False)
    assert [r.status for r in res] == ["ok"] * 10
    assert srv.batch.created == 3 and teacher.last_run["resubmitted"] == 6 + 2  # 10 -> 6 left -> 2 left
    assert set(srv.requests_by_key.values()) == {1}  # an unrun request is never paid twice


def test_a_partially_failed_batch_stores_its_failures_and_retry_failed_reasks_them(server, tmp_path, api_key):
    srv = server(faults=FaultPlan(schedule=["ok", "400", "ok", "500", "ok", "ok"]))  # in the batch's line order
    srv.batch.latency_s = 0.05
    tasks = make_tasks(6)
    res = batch_teacher(srv, tmp_path).run(tasks, progress=False)
    assert [r.status for r in res] == ["ok", "failed", "ok", "failed", "ok", "ok"]
    assert "HTTP 400: injected 400" in res[1].error and "HTTP 500" in res[3].error
    assert stored(tmp_path / "cache.sqlite")[res[1].cache_key] == ("failed", 1)
    srv.faults = FaultPlan()
    again = batch_teacher(srv, tmp_path).run(tasks, retry_failed=True, progress=False)
    assert [r.status for r in again] == ["ok"] * 6 and srv.batch.created == 2
    assert again[1].attempts == 2 and [r.cached for r in again] == [True, False, True, False, True, True]


def test_a_batch_that_fails_validation_stops_the_run(server, tmp_path, api_key):
    srv = server()
    srv.batch.latency_s, srv.batch.fail_validation = 0.02, "line 1: unsupported model"
    with pytest.raises(TeacherFatalError, match="failed validation: line 1: unsupported model"):
        batch_teacher(srv, tmp_path).run(make_tasks(3), progress=False)
    assert stored(tmp_path / "cache.sqlite") == {}


def test_a_stopped_run_resumes_its_stored_batch_in_a_new_process(server, tmp_path, api_key):
    """The first run waits 0 s for its batch (BatchPending, as if killed); the same command in a new process finds
    the batch id in the cache, polls it and merges it: one batch created, every request paid once."""
    srv = server()
    srv.batch.latency_s = 1.0
    with pytest.raises(BatchPending, match="rerun to collect"):
        batch_teacher(srv, tmp_path, batch_wait_s=0.0).run(make_tasks(5), progress=False)
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        ((status, batch_id),) = db.execute("SELECT status, batch_id FROM batches").fetchall()
    assert status == "submitted" and batch_id in srv.batch.batches
    tasks = _write_tasks(tmp_path / "tasks.jsonl", make_tasks(5))
    proc = _cli(
        ["--tasks", str(tasks), "--cache", str(tmp_path / "cache.sqlite"), "--out", str(tmp_path / "o.jsonl"),
         "--model", MODEL, "--base-url", srv.url, "--api-key-env", KEY_ENV, "--mode", "batch", "--batch-poll", "0.1",
         "--no-progress"],
        _env(api_key),
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert srv.batch.created == 1 and set(srv.requests_by_key.values()) == {1} and len(srv.requests_by_key) == 5
    assert json.loads(out)["summary"]["ok"] == 5
    with RequestCache(tmp_path / "cache.sqlite") as c:
        assert c.sql("SELECT status FROM batches") == [("merged",)]


def test_batch_mode_keeps_the_api_key_out_of_every_error_and_file(server, tmp_path, api_key):
    srv = server(api_key=api_key)
    srv.batch.latency_s = 0.02
    res = batch_teacher(srv, tmp_path).run(make_tasks(3), progress=False)
    assert [r.status for r in res] == ["ok"] * 3
    wrong = server(api_key="sk-cftlab-the-other-key")  # answers 401 and echoes the key it was sent
    with pytest.raises(TeacherFatalError) as err:
        batch_teacher(wrong, tmp_path / "b").run(make_tasks(3), progress=False)
    assert "HTTP 401" in str(err.value) and "[REDACTED]" in str(err.value) and api_key not in str(err.value)
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert api_key.encode() not in written
