"""Batch mode of the ``openai`` teacher (``teacher.mode=batch``): the same requests through the OpenAI Batch API, at
half the price, into the same durable request cache.

1. The keys to ask (not in the cache, or failed with ``retry_failed``), less those another run's open batch holds,
   are **reserved** in the cache (table ``batches`` + ``batch_keys``, one transaction), written as JSON Lines
   (``{"custom_id": <cache key>, "method": "POST", "url": "/v1/chat/completions", "body": <request>}``, at most
   :data:`MAX_REQUESTS` a file), **uploaded** (``files.create``, ``purpose=batch``) and **created**
   (``batches.create``, ``completion_window=24h``); the file id and then the batch id are stored as soon as known.
2. Open batches are **polled** every ``batch_poll_s``. A finished one is **merged**: each output line becomes a
   cache row (``ok``, priced at the Batch API's discount, ``cft_lab.teachers.pricing``; or ``failed`` with its
   HTTP status and message); error lines that say the request never ran (``batch_expired``, ``batch_cancelled``)
   and keys with no line store nothing and are submitted again in a new batch; a batch that ``failed`` validation
   stops the run (the request file is at fault, not an item).
3. A run waits at most ``batch_wait_s``; batches still running then raise :class:`BatchPending`, and a rerun (a new
   process) polls the batches recorded in the cache instead of paying for them again. A reservation whose file was
   uploaded but whose batch id was never stored (a crash in between) is matched to the batch created from that file
   (``batches.list``), or its batch is created then.

The budget caps what is submitted: each request is estimated at the Batch price from its prompt (the observed
tokens per character, 1/3 before any answer) and the mean completion of this model's cached answers (``max_tokens``
before any); keys beyond the budget end ``budget_exhausted``. Transient errors of the Files/Batch calls are retried
per :mod:`cft_lab.teachers.retry` (tenacity); 401/403/404 stop the run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from cft_lab.teachers.cache import CacheRow, RequestCache, dumps_sampling
from cft_lab.teachers.retry import (
    TeacherFatalError,
    describe_error,
    is_fatal,
    is_retryable,
    wait_retry_after_or_backoff,
)

if TYPE_CHECKING:
    from cft_lab.teachers.base import TeacherResult, TeacherTask
    from cft_lab.teachers.openai_teacher import OpenAITeacher

log = logging.getLogger(__name__)

MAX_REQUESTS = 50_000  # the Batch API's limit per file (and 200 MB, see MAX_BYTES)
MAX_BYTES = 190 * 2**20
OPEN = ("reserved", "uploaded", "submitted")
NOT_RUN = ("batch_expired", "batch_cancelled")


class BatchPending(RuntimeError):
    """Batches are still running (their ids are stored in the request cache): rerun to collect them."""


class BatchRun:
    """One ``run`` of an :class:`OpenAITeacher` in batch mode (see the module doc)."""

    def __init__(self, teacher: OpenAITeacher):
        self.t = teacher
        self.spent = 0.0
        self.ok = self.failed = self.resubmitted = 0
        self.batches: list[str] = []
        self.asked: set[str] = set()

    async def run(self, tasks: list[TeacherTask], retry_failed: bool) -> list[TeacherResult]:
        t, t0 = self.t, time.monotonic()
        requests = [t.request_for(task) for task in tasks]
        first = {}
        for task, (key, messages) in zip(tasks, requests):
            first.setdefault(key, (task, messages))
        client = t.client()
        budget_stopped = False
        with RequestCache(t.cache_path, fsync=t.fsync) as cache:
            outcomes = cache.get_many(list(first))
            todo = [k for k in first if k not in outcomes or (retry_failed and outcomes[k].status == "failed")]
            earlier = {k: outcomes.pop(k).attempts for k in todo if k in outcomes}
            n_cached = len(first) - len(todo)
            deadline = time.monotonic() + t.batch_wait_s
            try:
                while True:
                    held = self._held(cache)
                    new = [k for k in todo if k not in held and k not in outcomes]
                    fits, cut = self._fit_budget(cache, new, first)
                    budget_stopped = budget_stopped or bool(cut)
                    todo = [k for k in todo if k not in cut]
                    if fits:
                        await self._submit(client, cache, fits, first)
                    for row in self._open(cache):
                        await self._advance(client, cache, row, first, earlier, outcomes)
                    todo = [k for k in todo if k not in outcomes]
                    if not todo:
                        break
                    if time.monotonic() >= deadline:
                        ids = sorted({r["batch_id"] or r["id"] for r in self._open(cache)})
                        raise BatchPending(
                            f"teacher {t.name}: {len(todo)} requests are in {len(ids)} running batch(es) "
                            f"({', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}) after teacher.batch_wait_s="
                            f"{t.batch_wait_s:g}; their ids are stored in {t.cache_path}: rerun to collect them"
                        )
                    await asyncio.sleep(t.batch_poll_s)
            finally:
                await client.close()
        results = t._results(tasks, requests, outcomes, self.asked)
        t.last_run = {
            "mode": "batch",
            "asked": self.ok + self.failed,
            "ok": self.ok,
            "failed": self.failed,
            "cached_keys": n_cached,
            "resubmitted": self.resubmitted,
            "batches": self.batches,
            "spent_usd": round(self.spent, 6),
            "budget_stopped": budget_stopped,
            "wall_s": round(time.monotonic() - t0, 3),
        }
        log.info("teacher %s: %s", t.name, t.last_run)
        return results

    # ----------------------------------------------------------------- the cache's batch tables
    def _open(self, cache: RequestCache) -> list[dict]:
        cols = ("id", "input_file_id", "batch_id", "status", "detail")
        q = f"SELECT {', '.join(cols)} FROM batches WHERE status IN ({', '.join('?' for _ in OPEN)}) AND model = ?"
        return [dict(zip(cols, r)) for r in cache.sql(q, (*OPEN, self.t.model))]

    def _held(self, cache: RequestCache) -> set[str]:
        q = (
            "SELECT k.key FROM batch_keys k JOIN batches b ON b.id = k.batch WHERE b.status IN "
            f"({', '.join('?' for _ in OPEN)})"
        )
        return {r[0] for r in cache.sql(q, OPEN)}

    def _keys(self, cache: RequestCache, rid: str) -> list[str]:
        return [r[0] for r in cache.sql("SELECT key FROM batch_keys WHERE batch = ?", (rid,))]

    def _set(self, cache: RequestCache, rid: str, **cols) -> None:
        sets = ", ".join(f"{c} = ?" for c in cols)
        cache.sql(f"UPDATE batches SET {sets}, updated_at = ? WHERE id = ?", (*cols.values(), time.time(), rid))

    # ----------------------------------------------------------------- budget
    def _fit_budget(self, cache: RequestCache, keys: list[str], first: dict) -> tuple[list[str], set[str]]:
        t = self.t
        if t.budget_usd is None or not keys:
            return keys, set()
        row = cache.sql(
            "SELECT AVG(completion_tokens) FROM responses WHERE status = 'ok' AND request_model = ?", (t.model,)
        )[0]
        completion = row[0] or t.sampling.get("max_tokens", 4096)
        open_est = sum(self._estimate(first[k][1], completion) for k in self._held(cache) if k in first)
        left, fits = t.budget_usd - self.spent - open_est, []
        for k in keys:
            est = self._estimate(first[k][1], completion)
            if est > left:
                break
            fits.append(k)
            left -= est
        cut = set(keys[len(fits) :])
        if cut:
            log.warning("teacher %s: budget $%.4f: %d requests not submitted (budget_exhausted)", t.name,
                        t.budget_usd, len(cut))  # fmt: skip
        return fits, cut

    def _estimate(self, messages: list[dict], completion: float) -> float:
        prompt = sum(len(m["content"]) for m in messages) // 3 + 1
        return self.t.prices.cost(self.t.model, prompt, int(completion) + 1, batch=True) or 0.0

    # ----------------------------------------------------------------- submitting
    async def _submit(self, client, cache: RequestCache, keys: list[str], first: dict) -> None:
        chunk: list[str] = []
        size = 0
        for k in keys:
            line = self._line(k, first[k][1], first[k][0])
            if chunk and (len(chunk) >= MAX_REQUESTS or size + len(line) > MAX_BYTES):
                await self._submit_one(client, cache, chunk, first)
                chunk, size = [], 0
            chunk.append(k)
            size += len(line)
        if chunk:
            await self._submit_one(client, cache, chunk, first)

    def _line(self, key: str, messages: list[dict], task: TeacherTask | None = None) -> bytes:
        body = {"model": self.t.model, "messages": messages, **(self.t.sampling_for(task) if task else self.t.sampling)}
        return (
            json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n"
        ).encode()

    async def _submit_one(self, client, cache: RequestCache, keys: list[str], first: dict) -> None:
        rid = "local-" + uuid.uuid4().hex[:16]
        now = time.time()
        with cache.transaction() as db:  # the reservation: no other run submits these keys from now on
            db.execute(
                "INSERT INTO batches (id, input_file_id, batch_id, status, host, model, requests, created_at, "
                "updated_at, detail) VALUES (?, '', NULL, 'reserved', ?, ?, ?, ?, ?, ?)",
                (rid, self.t.host(), self.t.model, len(keys), now, now, json.dumps({"owner": self.t.owner})),
            )
            db.executemany("INSERT INTO batch_keys (batch, key) VALUES (?, ?)", [(rid, k) for k in keys])
        data = b"".join(self._line(k, first[k][1], first[k][0]) for k in keys)
        f = await self._call(lambda: client.files.create(file=(f"{rid}.jsonl", data), purpose="batch"))
        self._set(cache, rid, input_file_id=f.id, status="uploaded")
        await self._create(client, cache, rid, f.id)
        log.info("teacher %s: submitted %d requests as batch %s", self.t.name, len(keys), rid)

    async def _create(self, client, cache: RequestCache, rid: str, file_id: str) -> None:
        b = await self._call(
            lambda: client.batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={"cft_lab_reservation": rid},
            )
        )
        self._set(cache, rid, batch_id=b.id, status="submitted")
        self.batches.append(b.id)

    # ----------------------------------------------------------------- polling and merging
    async def _advance(self, client, cache: RequestCache, row: dict, first: dict, earlier: dict, outcomes: dict):
        """Move one open reservation on: adopt or create its batch, poll it, merge it when it has ended."""
        from cft_lab.teachers.cache import owner_alive

        rid = row["id"]
        if row["status"] == "reserved":  # a run that died before its upload: drop it if that run is gone
            owner = json.loads(row["detail"] or "{}").get("owner", "")
            if owner != self.t.owner and not owner_alive(owner):
                cache.sql("DELETE FROM batch_keys WHERE batch = ?", (rid,))
                cache.sql("DELETE FROM batches WHERE id = ?", (rid,))
            return
        if row["status"] == "uploaded":  # created before a crash, or not: find it by its input file
            found = None
            async for b in client.batches.list(limit=100):
                if b.input_file_id == row["input_file_id"]:
                    found = b
                    break
            if found is None:
                await self._create(client, cache, rid, row["input_file_id"])
            else:
                self._set(cache, rid, batch_id=found.id, status="submitted")
            return
        b = await self._call(lambda: client.batches.retrieve(row["batch_id"]))
        if b.status not in ("completed", "expired", "failed", "cancelled"):
            return
        if b.status == "failed":
            errors = "; ".join(e.message or "" for e in (b.errors.data if b.errors and b.errors.data else []))
            self._set(cache, rid, status="abandoned", detail=json.dumps({"remote": b.status, "errors": errors}))
            raise TeacherFatalError(f"teacher {self.t.name}: batch {b.id} failed validation: {errors or 'no detail'}")
        lines = []
        for fid in (b.output_file_id, b.error_file_id):
            if fid:
                content = await self._call(lambda fid=fid: client.files.content(fid))
                lines += [json.loads(x) for x in content.content.decode("utf-8").splitlines() if x.strip()]
        answered = self._merge(cache, lines, first, earlier, outcomes)
        missing = [k for k in self._keys(cache, rid) if k not in answered]
        self.resubmitted += len(missing)
        self._set(cache, rid, status="merged", detail=json.dumps({"remote": b.status, "not_run": len(missing)}))
        if missing:
            log.warning("teacher %s: batch %s %s with %d requests not run; they go into a new batch", self.t.name,
                        b.id, b.status, len(missing))  # fmt: skip

    def _merge(self, cache: RequestCache, lines: list[dict], first: dict, earlier: dict, outcomes: dict) -> set[str]:
        from cft_lab.teachers.retry import MalformedResponse
        from cft_lab.teachers.sync import parse_completion

        t, answered = self.t, set()
        for line in lines:
            key = line.get("custom_id")
            if key not in first:
                continue
            error, resp = line.get("error") or {}, line.get("response") or {}
            if error.get("code") in NOT_RUN or (not resp and not error):
                continue  # never ran: asked again in a new batch
            task, _ = first[key]
            sampling = t._sampling_json if not task.sampling else dumps_sampling(t.sampling_for(task))
            row = CacheRow(key, "failed", request_model=t.model, prompt_version=t.prompt_version,
                           sampling=sampling, record_id=task.record_id, kind=task.kind, attempts=1)  # fmt: skip
            body = resp.get("body")
            if resp.get("status_code") == 200:
                try:
                    text, finish, usage, reported = parse_completion(body)
                except MalformedResponse as e:
                    row.error = f"batch: {e}"
                else:
                    pt, ct, cached = usage
                    cost = None if usage == (0, 0, 0) else t.prices.cost(reported, pt, ct, cached, fallback=t.model,
                                                                          batch=True)  # fmt: skip
                    row.status, row.text, row.model, row.finish_reason = "ok", text, reported, finish
                    row.prompt_tokens, row.completion_tokens, row.cost_usd = pt, ct, cost
            else:
                msg = (body or {}).get("error", {}).get("message") if isinstance(body, dict) else None
                code = resp.get("status_code")
                row.error = t.redact(f"HTTP {code}: {msg or error.get('message') or 'batch request failed'}")
            cache.put(row)
            row.attempts += earlier.get(key, 0)
            outcomes[key] = row
            self.asked.add(key)
            answered.add(key)
            if row.status == "ok":
                self.ok += 1
                self.spent += row.cost_usd or 0.0
            else:
                self.failed += 1
        return answered

    async def _call(self, fn):
        """One Files/Batch API call, retried on transient errors; 401/403/404 stop the run."""
        t = self.t
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(t.max_attempts),
                retry=retry_if_exception(is_retryable),
                wait=wait_retry_after_or_backoff(t.backoff_initial_s, t.backoff_max_s),
                reraise=True,
            ):
                with attempt:
                    return await fn()
        except Exception as exc:
            if is_fatal(exc) or is_retryable(exc):
                msg = f"teacher {t.name}: batch API at {t.host()}: {t.redact(describe_error(exc))}"
                raise TeacherFatalError(msg) from None
            raise
