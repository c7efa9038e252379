"""The ``openai`` teacher: any OpenAI-compatible chat-completions server, through the official SDK.

``OpenAITeacher(...).run(tasks)`` renders each task with the pinned prompt (:mod:`cft_lab.prompts.teacher`),
looks its request key up in the durable cache (:mod:`cft_lab.teachers.cache`), asks the server only for keys
with no stored row (or, with ``retry_failed=True``, a stored failure), and stores every outcome as it arrives:

* ``AsyncOpenAI`` with ``max_retries=0`` and a per-request ``timeout_s``; ``concurrency`` workers, of which an
  adaptive window (:mod:`cft_lab.teachers.adaptive`) lets as many requests be in flight as the server keeps up with;
* **a 429 is back-pressure, not a failed attempt**: it shrinks the window, the request waits its ``Retry-After``
  and is asked again, for at most ``rate_limit_patience_s`` in all; other faults are retried per
  :mod:`cft_lab.teachers.retry` for at most ``max_attempts`` attempts;
* **an unreachable server stops the run**: when no HTTP answer has come for ``connect_grace_s`` while every attempt
  failed to connect (refused, no route, unknown host), the run raises :class:`TeacherFatalError` naming the host,
  instead of retrying every request; so do 401/403/404 (wrong key or model);
* **two runs sharing one cache never ask the same key at the same time**: a key is claimed in the cache before it is
  asked (:meth:`RequestCache.claim`); a key another run holds is waited for and read from the cache when it lands
  (or taken over when that run's claim expires);
* the API key is read from the environment variable named ``api_key_env`` when the teacher is built and kept
  only in memory (``api_key_env=None``: no key, for local servers); it is redacted from every error this module
  stores, logs or raises, and ``describe()`` gives the endpoint's host, never the key;
* a USD budget (``budget_usd``): before each submission, spent + the in-flight estimate + this request's
  estimate must stay within it; otherwise the teacher waits for in-flight requests to finish (their actual cost
  replaces their estimate) and, once none is left in flight and it still would not fit, stops submitting. Tasks
  never asked end ``budget_exhausted`` (not stored: a rerun with more budget asks them). The estimate uses the
  observed tokens-per-character of prompts (1/3 before any answer) and the observed mean completion length
  (``max_tokens`` before any answer), so the first requests are estimated high;
* ``mode="batch"`` sends the same requests through the Batch API instead (:mod:`cft_lab.teachers.batch`);
* ``last_run`` reports counts, cost, the achieved rate and what the window learned (429s, the limit it found).

Costs use the price of the model the server reports (a snapshot), else of the model asked; a model with no price
costs ``None`` (warned), and a budget with an unknown price is refused at construction. A response without
``usage`` also costs ``None`` (its tokens are recorded as 0).

Example (against the test server; a result, abridged)::

    teacher = OpenAITeacher("gpt4o_1120", "gpt-4o-2024-11-20", cache_path="store/teacher_cache.sqlite",
                            api_key_env="OPENAI_API_KEY", budget_usd=50.0)
    teacher.run([TeacherTask("wi-000001", "critique", "What is 2+2?", "It is 5.")])
    # [TeacherResult(record_id='wi-000001', kind='critique', status='ok', text='... Conclusion: wrong [END]',
    #   model='gpt-4o-2024-11-20', prompt_version='v1', sampling={'max_tokens': 3200, 'n': 1, ...},
    #   prompt_tokens=58, completion_tokens=20, cost_usd=0.000345, cache_key='1d95...', attempts=1, cached=False,
    #   finish_reason='stop')]
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
from tenacity import AsyncRetrying, retry_if_exception
from tqdm import tqdm

from cft_lab.prompts.teacher import default_sampling, render_messages, template_hash
from cft_lab.teachers.adaptive import AdaptiveLimit
from cft_lab.teachers.base import TeacherResult, TeacherTask, failed_result, redact
from cft_lab.teachers.cache import CacheRow, RequestCache, dumps_sampling, loads_sampling, request_key
from cft_lab.teachers.pricing import PriceTable
from cft_lab.teachers.retry import (
    MalformedResponse,
    TeacherFatalError,
    describe_error,
    is_connect_error,
    is_fatal,
    is_retryable,
    retry_after_of,
    status_of,
    wait_retry_after_or_backoff,
)

log = logging.getLogger(__name__)


@dataclass
class _RunState:
    spent: float = 0.0
    inflight: int = 0
    inflight_est: float = 0.0
    ok: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    prompt_chars: int = 0
    completion_tokens: int = 0
    answered: int = 0
    fatal: str | None = None
    budget_stopped: bool = False
    pause_until: float = 0.0
    connect_failures: int = 0  # attempts that could not connect since the last HTTP answer
    unreachable_since: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Run:
    """What the workers of one ``run`` share."""

    client: openai.AsyncOpenAI
    cache: RequestCache
    first: dict  # key -> (first task, messages)
    outcomes: dict  # key -> CacheRow (stored before the run, or stored during it)
    earlier: dict  # key -> attempts stored before this run (failures being retried)
    state: _RunState
    bar: tqdm
    n_cached: int
    limiter: AdaptiveLimit
    retry_failed: bool
    asked: set = field(default_factory=set)  # keys this run asked (the others were answered before or elsewhere)
    deferred: list = field(default_factory=list)  # keys another run holds a claim on


class OpenAITeacher:
    """Critiques and answers from an OpenAI-compatible server (see the module docstring)."""

    def __init__(
        self,
        name: str,
        model: str,
        *,
        cache_path: str | Path,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        prompt_version: str = "v1",
        sampling: dict | None = None,
        concurrency: int = 64,
        timeout_s: float = 120.0,
        max_attempts: int = 6,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        max_retry_after_s: float = 600.0,
        rate_limit_patience_s: float = 900.0,
        connect_grace_s: float = 10.0,
        claim_poll_s: float = 0.5,
        budget_usd: float | None = None,
        prices: PriceTable | None = None,
        fsync: bool = False,
        mode: str = "sync",
        batch_poll_s: float = 30.0,
        batch_wait_s: float = 86400.0,
    ):
        if concurrency < 1 or max_attempts < 1 or timeout_s <= 0 or rate_limit_patience_s <= 0:
            raise ValueError(
                f"need concurrency >= 1, max_attempts >= 1, timeout_s > 0, rate_limit_patience_s > 0; got "
                f"{concurrency}, {max_attempts}, {timeout_s}, {rate_limit_patience_s}"
            )
        if mode not in ("sync", "batch"):
            raise ValueError(f"teacher {name}: mode must be sync or batch, got {mode!r}")
        self.name, self.model, self.base_url = name, model, base_url
        self.api_key_env, self.prompt_version = api_key_env, prompt_version
        self.sampling = default_sampling(prompt_version) if sampling is None else dict(sampling)
        self._sampling_json = dumps_sampling(self.sampling)
        if self.sampling.get("n", 1) != 1:
            raise ValueError(f"teacher {name}: n must be 1 (one critique per item), got {self.sampling['n']}")
        self.cache_path, self.fsync = Path(cache_path), fsync
        self.concurrency, self.timeout_s, self.max_attempts = concurrency, timeout_s, max_attempts
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.max_retry_after_s, self.budget_usd = max_retry_after_s, budget_usd
        self.rate_limit_patience_s, self.connect_grace_s = rate_limit_patience_s, connect_grace_s
        self.claim_poll_s, self.mode = claim_poll_s, mode
        self.batch_poll_s, self.batch_wait_s = batch_poll_s, batch_wait_s
        # a claim outlives any single attempt; it is renewed before every wait
        self.claim_ttl_s = 2 * timeout_s + 60.0
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.prices = prices or PriceTable()
        if budget_usd is not None and not self.prices.known(model):
            raise ValueError(
                f"teacher {name}: budget_usd={budget_usd} is set but model {model!r} has no price; "
                "add it to the teacher's prices so the budget can be enforced"
            )
        if not self.prices.known(model):
            log.warning("teacher %s: model %r has no price; costs will be recorded as unknown (None)", name, model)
        if api_key_env is None:
            self._api_key = "EMPTY"  # local servers (vLLM) that check no key
        else:
            self._api_key = os.environ.get(api_key_env, "")
            if not self._api_key:
                raise ValueError(f"teacher {name}: environment variable {api_key_env} (the API key) is not set")
        self.last_run: dict = {}

    def __repr__(self) -> str:
        return f"OpenAITeacher(name={self.name!r}, model={self.model!r}, endpoint={self.host()!r})"

    # ----------------------------------------------------------------- description
    def host(self) -> str:
        if not self.base_url:
            return "api.openai.com"
        parts = urlsplit(self.base_url)  # hostname and port only: never userinfo, path or query
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)

    def describe(self) -> dict:
        price = self.prices.get(self.model)
        return {
            "name": self.name,
            "kind": "openai",
            "mode": self.mode,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "template_hashes": {k: template_hash(k, self.prompt_version) for k in ("critique", "answer")},
            "sampling": dict(self.sampling),
            "endpoint_host": self.host(),
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
            "rate_limit_patience_s": self.rate_limit_patience_s,
            "budget_usd": self.budget_usd,
            "price_usd_per_1m": None if price is None else {"input": price.input, "output": price.output},
            "cache": str(self.cache_path),
        }

    def request_for(self, task: TeacherTask) -> tuple[str, list[dict]]:
        """(cache key, messages) of one task."""
        messages = render_messages(task.kind, task.question, task.response, self.prompt_version)
        return request_key(self.model, messages, self.sampling), messages

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=self._api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s)

    def redact(self, text: str) -> str:
        return redact(text, self._api_key)

    # ----------------------------------------------------------------- running
    def run(
        self, tasks: list[TeacherTask], *, retry_failed: bool = False, progress: bool = True
    ) -> list[TeacherResult]:
        """One result per task, in order (see the module docstring). Raises only :class:`TeacherFatalError` (and,
        in batch mode, :class:`cft_lab.teachers.batch.BatchPending` while its batches run)."""
        if self.mode == "batch":
            from cft_lab.teachers.batch import BatchRun

            coro = BatchRun(self).run(list(tasks), retry_failed)
        else:
            coro = self._run(list(tasks), retry_failed, progress)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        box: dict = {}  # called from inside an event loop (a notebook): run ours in a thread

        def target():
            try:
                box["out"] = asyncio.run(coro)
            except BaseException as exc:  # re-raised in the caller's thread
                box["err"] = exc

        t = threading.Thread(target=target)
        t.start()
        t.join()
        if "err" in box:
            raise box["err"]
        return box["out"]

    async def _run(self, tasks: list[TeacherTask], retry_failed: bool, progress: bool) -> list[TeacherResult]:
        t0 = time.monotonic()
        requests = [self.request_for(t) for t in tasks]
        first: dict[str, tuple[TeacherTask, list[dict]]] = {}
        for task, (key, messages) in zip(tasks, requests):
            first.setdefault(key, (task, messages))
        state = _RunState()
        with RequestCache(self.cache_path, fsync=self.fsync) as cache:
            outcomes = cache.get_many(list(first))
            to_ask = [k for k in first if k not in outcomes or (retry_failed and outcomes[k].status == "failed")]
            earlier = {k: outcomes.pop(k).attempts for k in to_ask if k in outcomes}  # attempts add up in the cache
            n_cached = len(first) - len(to_ask)
            with tqdm(
                total=len(to_ask), desc=f"teacher {self.name}", unit="req", disable=not progress, mininterval=1.0
            ) as bar:
                bar.set_postfix(ok=0, failed=0, cached=n_cached, usd="0.00", refresh=False)
                client = self.client()
                limiter = AdaptiveLimit(self.concurrency)
                run = _Run(client, cache, first, outcomes, earlier, state, bar, n_cached, limiter, retry_failed)
                try:
                    todo = to_ask
                    while todo:
                        pending = iter(todo)
                        await asyncio.gather(*[self._worker(run, pending) for _ in range(self.concurrency)])
                        todo = await self._await_other_runs(run)
                finally:
                    await client.close()
        if state.fatal:
            raise TeacherFatalError(
                f"teacher {self.name}: {state.fatal}; stopped after {state.ok} ok and "
                f"{state.failed} failed answers (stored); rerun to resume"
            )
        results = self._results(tasks, requests, outcomes, run.asked)
        wall = time.monotonic() - t0
        answered = state.ok + state.failed
        self.last_run = {
            "mode": "sync",
            "asked": answered,
            "ok": state.ok,
            "failed": state.failed,
            "cached_keys": n_cached,
            "answered_by_another_run": sum(1 for k in to_ask if k not in run.asked and k in outcomes),
            "spent_usd": round(state.spent, 6),
            "budget_stopped": state.budget_stopped,
            "wall_s": round(wall, 3),
            "achieved_rps": round(answered / wall, 2) if wall > 0 else None,
            "concurrency": self.concurrency,
            **limiter.report(),
        }
        log.info("teacher %s: %s", self.name, self.last_run)
        return results

    async def _await_other_runs(self, run: _Run) -> list[str]:
        """Keys another run claimed: wait until each is answered there (read from the cache) or its claim
        expires; returns those to ask here (claims taken over), [] when every key is settled."""
        while run.deferred and not run.state.fatal and not run.state.budget_stopped:
            await asyncio.sleep(self.claim_poll_s)
            keys, run.deferred = run.deferred, []
            stored = run.cache.get_many(keys)
            todo = []
            for k in keys:
                row = stored.get(k)
                if row is not None and (row.status == "ok" or not run.retry_failed):
                    run.outcomes[k] = row
                    run.bar.update(1)
                elif run.cache.claim(k, self.owner, self.claim_ttl_s, retry_failed=run.retry_failed) == "busy":
                    run.deferred.append(k)
                else:
                    todo.append(k)
            if todo:
                return todo
        return []

    async def _worker(self, run: _Run, pending) -> None:
        """One of ``concurrency`` workers: takes the next key, claims it, checks the budget, asks, stores, repeats.

        Workers (rather than a task per request behind a semaphore) start the next request as soon as one is
        stored, without a scheduler round trip, which keeps a server's capacity busy (``cft_lab.perf.teacher``);
        the adaptive window decides how many of them may have a request in flight.
        """
        state = run.state
        for key in pending:  # a shared iterator: each key goes to exactly one worker
            if state.fatal or state.budget_stopped:
                return
            claim = run.cache.claim(key, self.owner, self.claim_ttl_s, retry_failed=run.retry_failed)
            if claim != "mine":
                if claim == "busy":
                    run.deferred.append(key)  # another run is asking it: wait for its answer
                else:  # answered by another run since this one started
                    run.outcomes[key] = run.cache.get_many([key])[key]
                    run.bar.update(1)
                continue
            task, messages = run.first[key]
            est = self._estimate(messages, state)
            if self.budget_usd is not None:
                while state.spent + state.inflight_est + est > self.budget_usd and state.inflight > 0:
                    state.changed.clear()
                    await state.changed.wait()
                    est = self._estimate(messages, state)
                if state.budget_stopped or state.spent + state.inflight_est + est > self.budget_usd:
                    if not state.budget_stopped:
                        state.budget_stopped = True
                        log.warning(
                            "teacher %s: budget $%.4f reached (spent $%.4f); the tasks not yet asked "
                            "are budget_exhausted",
                            self.name,
                            self.budget_usd,
                            state.spent,
                        )
                    run.cache.release(key, self.owner)
                    return  # this key stays unasked: budget_exhausted
            state.inflight += 1
            state.inflight_est += est
            row = None
            try:
                row = await self._ask(run, key, task, messages)
                if row is not None:  # None: a fatal error, not this item's fault and not stored
                    self._record(run, key, task, messages, row)
            finally:
                if row is None:
                    run.cache.release(key, self.owner)
                state.inflight -= 1
                state.inflight_est -= est
                state.changed.set()
                run.bar.update(1)
                if not run.bar.disable:
                    run.bar.set_postfix(
                        ok=state.ok, failed=state.failed, cached=run.n_cached, usd=f"{state.spent:.2f}", refresh=False
                    )

    def _record(self, run: _Run, key: str, task: TeacherTask, messages: list[dict], row: CacheRow) -> None:
        run.cache.put(row)  # durable before anything else; adds row.attempts to a stored failure's; drops the claim
        row.attempts += run.earlier.get(key, 0)
        run.outcomes[key] = row
        run.asked.add(key)
        state = run.state
        if row.status == "ok":
            state.ok += 1
            state.spent += row.cost_usd or 0.0
            state.answered += 1
            state.prompt_tokens += row.prompt_tokens
            state.prompt_chars += sum(len(m["content"]) for m in messages)
            state.completion_tokens += row.completion_tokens
        else:
            state.failed += 1
            log.warning(
                "teacher %s: %s failed after %d attempts: %s", self.name, task.record_id, row.attempts, row.error
            )

    def _estimate(self, messages: list[dict], state: _RunState) -> float:
        if self.budget_usd is None:
            return 0.0
        chars = sum(len(m["content"]) for m in messages)
        per_char = state.prompt_tokens / state.prompt_chars if state.prompt_chars else 1 / 3
        completion = (
            state.completion_tokens / state.answered if state.answered else self.sampling.get("max_tokens", 4096)
        )
        return self.prices.cost(self.model, int(chars * per_char) + 1, int(completion) + 1) or 0.0

    async def _ask(self, run: _Run, key: str, task: TeacherTask, messages: list[dict]) -> CacheRow | None:
        """Ask one key until it is answered, fails for good, or the run stops (None)."""
        state, limiter = run.state, run.limiter
        body = {"model": self.model, "messages": messages, **self.sampling}
        tally = {"attempts": 0, "failures": 0, "throttled_since": None}

        async def attempt():
            tally["attempts"] += 1
            delay = state.pause_until - time.monotonic()  # a 503's Retry-After holds back every request of the run
            if delay > 0:
                await asyncio.sleep(delay)
            seq, in_flight = await limiter.acquire()
            try:
                # The SDK's documented raw-request path: the same auth, timeout and error classes (a non-2xx
                # status still raises APIStatusError) as ``chat.completions.create``, minus its per-call parameter
                # transform and the typed model it builds from the body; together they were about 1 of ~2.1 ms
                # client CPU per request (measured with cft_lab.perf.teacher). The body is read as plain JSON.
                resp = await run.client.post("/chat/completions", cast_to=httpx.Response, body=body)
            except Exception as exc:
                self._observe(run, exc, seq, in_flight, tally)
                raise
            finally:
                await limiter.release()
            self._observe(run, None, seq, in_flight, tally, resp.headers)
            try:
                data = json.loads(resp.content)
            except ValueError as exc:  # the body claimed JSON but was not
                raise MalformedResponse(f"response body is not valid JSON ({exc})") from None
            return _parse(data)

        def pause_all(seconds: float) -> None:
            state.pause_until = max(state.pause_until, time.monotonic() + seconds)

        backoff = wait_retry_after_or_backoff(self.backoff_initial_s, self.backoff_max_s, pause_all)

        def retry(exc: BaseException) -> bool:  # called once per failed attempt
            if status_of(exc) != 429:
                tally["failures"] += 1
            if state.fatal or not is_retryable(exc):
                return False
            asked = retry_after_of(exc)
            if asked is not None and asked > self.max_retry_after_s:
                return False
            if status_of(exc) == 429:  # back-pressure: bounded by the patience, not by the attempts
                waited = time.monotonic() - tally["throttled_since"]
                return waited + (asked or 0.0) <= self.rate_limit_patience_s
            return tally["failures"] < self.max_attempts

        def wait(retry_state) -> float:
            exc = retry_state.outcome.exception()
            if status_of(exc) == 429:  # this request waits; the window has already shrunk for the others
                asked = retry_after_of(exc)
                # jittered, so that the requests one burst of 429s turned away do not come back as one burst
                seconds = (
                    asked * random.uniform(1.0, 1.1) if asked is not None else backoff.seconds(None, tally["throttled"])
                )
            else:
                seconds = backoff.seconds(exc, tally["failures"])
            run.cache.renew(key, self.owner, seconds + self.claim_ttl_s)
            return seconds

        base = CacheRow(
            key,
            "failed",
            request_model=self.model,
            prompt_version=self.prompt_version,
            sampling=self._sampling_json,
            record_id=task.record_id,
            kind=task.kind,
        )
        try:
            try:
                parsed = await attempt()  # most requests succeed at once: they skip the retry machinery
            except Exception as first:
                if not retry(first):
                    raise
                await asyncio.sleep(wait(_Outcome(first)))
                async for tries in AsyncRetrying(
                    stop=lambda _: False, retry=retry_if_exception(retry), wait=wait, reraise=True
                ):
                    with tries:
                        parsed = await attempt()
        except Exception as exc:
            error = self.redact(describe_error(exc))
            asked = retry_after_of(exc)
            if asked is not None and asked > self.max_retry_after_s:
                error += f" (server asked to retry after {asked:.0f} s, more than max_retry_after_s)"
            elif status_of(exc) == 429:
                error += f" (rate-limited for {self.rate_limit_patience_s:g} s: teacher.rate_limit_patience_s)"
            if is_fatal(exc):
                state.fatal = state.fatal or error
            elif is_connect_error(exc) and state.unreachable_since is not None:  # no answer since: not the item
                state.fatal = state.fatal or self._unreachable(state, exc)
            if state.fatal:
                return None
            base.error, base.attempts = error, tally["attempts"]
            return base
        text, finish, usage, reported = parsed
        prompt_tokens, completion_tokens, cached_tokens = usage
        cost = (
            None
            if usage == (0, 0, 0)
            else self.prices.cost(reported, prompt_tokens, completion_tokens, cached_tokens, fallback=self.model)
        )
        base.status, base.text, base.model, base.finish_reason = "ok", text, reported, finish
        base.prompt_tokens, base.completion_tokens, base.cost_usd = prompt_tokens, completion_tokens, cost
        base.attempts = tally["attempts"]
        return base

    def _observe(self, run: _Run, exc, seq: int, in_flight: int, tally: dict, headers=None) -> None:
        """Feed one attempt's outcome to the window and to the run's reachability watch."""
        state, now = run.state, time.monotonic()
        if exc is not None and is_connect_error(exc):
            state.connect_failures += 1
            state.unreachable_since = state.unreachable_since or now
            if state.connect_failures >= 3 and now - state.unreachable_since >= self.connect_grace_s:
                state.fatal = state.fatal or self._unreachable(state, exc)
            return
        state.connect_failures, state.unreachable_since = 0, None  # the server answered (perhaps with an error)
        if exc is not None and status_of(exc) == 429:
            tally["throttled_since"] = tally["throttled_since"] or now
            tally["throttled"] = tally.get("throttled", 0) + 1
            run.limiter.on_throttle(seq, in_flight, exc.response.headers)
            return
        if exc is not None:
            headers = getattr(getattr(exc, "response", None), "headers", None)
        run.limiter.on_answer(headers)

    def _unreachable(self, state: _RunState, exc: BaseException) -> str:
        since = time.monotonic() - (state.unreachable_since or time.monotonic())
        return (
            f"cannot connect to {self.host()} ({self.redact(describe_error(exc))}): {state.connect_failures} "
            f"attempts in {since:.0f} s and no answer; is the server running and teacher.base_url right?"
        )

    # ----------------------------------------------------------------- results
    def _results(self, tasks, requests, outcomes, asked: set[str]) -> list[TeacherResult]:
        out, seen = [], set()
        for task, (key, _) in zip(tasks, requests):
            row = outcomes.get(key)
            if row is None:
                out.append(
                    failed_result(
                        task,
                        "not asked: the USD budget would have been passed",
                        prompt_version=self.prompt_version,
                        sampling=self.sampling,
                        cache_key=key,
                        status="budget_exhausted",
                    )
                )
                continue
            cached = key not in asked or key in seen
            seen.add(key)
            out.append(
                TeacherResult(
                    task.record_id,
                    task.kind,
                    row.status,
                    row.text,
                    row.error,
                    row.model,
                    row.prompt_version or self.prompt_version,
                    loads_sampling(row.sampling),
                    row.prompt_tokens,
                    row.completion_tokens,
                    row.cost_usd,
                    key,
                    row.attempts,
                    cached,
                    row.finish_reason,
                )
            )
        return out


class _Outcome:
    """The smallest stand-in for tenacity's RetryCallState that :meth:`OpenAITeacher._ask`'s ``wait`` reads (for
    the first attempt, which runs outside tenacity)."""

    def __init__(self, exc: BaseException):
        self.outcome = self
        self._exc = exc

    def exception(self) -> BaseException:
        return self._exc


def _parse(data) -> tuple[str, str | None, tuple[int, int, int], str | None]:
    """(text, finish_reason, (prompt, completion, cached prompt tokens), reported model) of a chat-completions
    JSON body, or MalformedResponse."""
    if not isinstance(data, dict):
        raise MalformedResponse(f"response is not a chat completion: {str(data)[:120]!r}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse("response has no choices")
    message = choices[0].get("message")
    text = message.get("content") if isinstance(message, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise MalformedResponse("response has empty content")
    usage = data.get("usage")
    if not isinstance(usage, dict):
        tokens = (0, 0, 0)
    else:
        details = usage.get("prompt_tokens_details")
        cached = (details.get("cached_tokens") if isinstance(details, dict) else None) or 0
        tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), int(cached))
    model = data.get("model")
    return text, choices[0].get("finish_reason"), tokens, model if isinstance(model, str) else None
