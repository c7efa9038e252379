"""Sync mode of the ``openai`` teacher: chat completions with an adaptive window of requests in flight, claims in
the shared request cache, retries, a budget (the behaviour is described in :mod:`cft_lab.teachers.openai_teacher`).

:class:`SyncRun` is one ``OpenAITeacher.run`` in sync mode: ``concurrency`` workers share an iterator of keys; each
claims its key in the cache, checks the budget, asks (waiting for a slot of the window,
:class:`~cft_lab.teachers.adaptive.AdaptiveLimit`), stores the outcome and takes the next key. Keys another run holds
are waited for afterwards (:meth:`SyncRun._await_other_runs`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import openai
from tenacity import AsyncRetrying, retry_if_exception
from tqdm import tqdm

from cft_lab.teachers.adaptive import AdaptiveLimit
from cft_lab.teachers.base import TeacherResult, TeacherTask
from cft_lab.teachers.cache import CacheRow, RequestCache, dumps_sampling
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

if TYPE_CHECKING:
    from cft_lab.teachers.openai_teacher import OpenAITeacher

log = logging.getLogger("cft_lab.teachers.openai_teacher")  # the teacher's one logger, whichever module logs


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


class SyncRun:
    """One ``run`` of an :class:`OpenAITeacher` in sync mode (see the module doc)."""

    def __init__(self, teacher: OpenAITeacher):
        self.t = teacher

    async def run(self, tasks: list[TeacherTask], retry_failed: bool, progress: bool) -> list[TeacherResult]:
        t0 = time.monotonic()
        requests = [self.t.request_for(t) for t in tasks]
        first: dict[str, tuple[TeacherTask, list[dict]]] = {}
        for task, (key, messages) in zip(tasks, requests):
            first.setdefault(key, (task, messages))
        state = _RunState()
        with RequestCache(self.t.cache_path, fsync=self.t.fsync) as cache:
            outcomes = cache.get_many(list(first))
            to_ask = [k for k in first if k not in outcomes or (retry_failed and outcomes[k].status == "failed")]
            earlier = {k: outcomes.pop(k).attempts for k in to_ask if k in outcomes}  # attempts add up in the cache
            n_cached = len(first) - len(to_ask)
            with tqdm(
                total=len(to_ask), desc=f"teacher {self.t.name}", unit="req", disable=not progress, mininterval=1.0
            ) as bar:
                bar.set_postfix(ok=0, failed=0, cached=n_cached, usd="0.00", refresh=False)
                client = self.t.client()
                limiter = AdaptiveLimit(self.t.concurrency)
                run = _Run(client, cache, first, outcomes, earlier, state, bar, n_cached, limiter, retry_failed)
                try:
                    todo = to_ask
                    while todo:
                        pending = iter(todo)
                        await asyncio.gather(*[self._worker(run, pending) for _ in range(self.t.concurrency)])
                        todo = await self._await_other_runs(run)
                finally:
                    await client.close()
        if state.fatal:
            raise TeacherFatalError(
                f"teacher {self.t.name}: {state.fatal}; stopped after {state.ok} ok and "
                f"{state.failed} failed answers (stored); rerun to resume"
            )
        results = self.t._results(tasks, requests, outcomes, run.asked)
        wall = time.monotonic() - t0
        answered = state.ok + state.failed
        self.t.last_run = {
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
            "concurrency": self.t.concurrency,
            **limiter.report(),
        }
        log.info("teacher %s: %s", self.t.name, self.t.last_run)
        return results

    async def _await_other_runs(self, run: _Run) -> list[str]:
        """Keys another run claimed: wait until each is answered there (read from the cache) or its claim
        expires; returns those to ask here (claims taken over), [] when every key is settled."""
        while run.deferred and not run.state.fatal and not run.state.budget_stopped:
            await asyncio.sleep(self.t.claim_poll_s)
            keys, run.deferred = run.deferred, []
            stored = run.cache.get_many(keys)
            todo = []
            for k in keys:
                row = stored.get(k)
                if row is not None and (row.status == "ok" or not run.retry_failed):
                    run.outcomes[k] = row
                    run.bar.update(1)
                elif run.cache.claim(k, self.t.owner, self.t.claim_ttl_s, retry_failed=run.retry_failed) == "busy":
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
            claim = run.cache.claim(key, self.t.owner, self.t.claim_ttl_s, retry_failed=run.retry_failed)
            if claim != "mine":
                if claim == "busy":
                    run.deferred.append(key)  # another run is asking it: wait for its answer
                else:  # answered by another run since this one started
                    run.outcomes[key] = run.cache.get_many([key])[key]
                    run.bar.update(1)
                continue
            task, messages = run.first[key]
            est = self._estimate(messages, state)
            if self.t.budget_usd is not None:
                while state.spent + state.inflight_est + est > self.t.budget_usd and state.inflight > 0:
                    state.changed.clear()
                    await state.changed.wait()
                    est = self._estimate(messages, state)
                if state.budget_stopped or state.spent + state.inflight_est + est > self.t.budget_usd:
                    if not state.budget_stopped:
                        state.budget_stopped = True
                        log.warning(
                            "teacher %s: budget $%.4f reached (spent $%.4f); the tasks not yet asked "
                            "are budget_exhausted",
                            self.t.name,
                            self.t.budget_usd,
                            state.spent,
                        )
                    run.cache.release(key, self.t.owner)
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
                    run.cache.release(key, self.t.owner)
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
                "teacher %s: %s failed after %d attempts: %s", self.t.name, task.record_id, row.attempts, row.error
            )

    def _estimate(self, messages: list[dict], state: _RunState) -> float:
        if self.t.budget_usd is None:
            return 0.0
        chars = sum(len(m["content"]) for m in messages)
        per_char = state.prompt_tokens / state.prompt_chars if state.prompt_chars else 1 / 3
        completion = (
            state.completion_tokens / state.answered if state.answered else self.t.sampling.get("max_tokens", 4096)
        )
        return self.t.prices.cost(self.t.model, int(chars * per_char) + 1, int(completion) + 1) or 0.0

    async def _ask(self, run: _Run, key: str, task: TeacherTask, messages: list[dict]) -> CacheRow | None:
        """Ask one key until it is answered, fails for good, or the run stops (None)."""
        state, limiter = run.state, run.limiter
        body = {"model": self.t.model, "messages": messages, **self.t.sampling_for(task)}
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
            return parse_completion(data)

        def pause_all(seconds: float) -> None:
            state.pause_until = max(state.pause_until, time.monotonic() + seconds)

        backoff = wait_retry_after_or_backoff(self.t.backoff_initial_s, self.t.backoff_max_s, pause_all)

        def retry(exc: BaseException) -> bool:  # called once per failed attempt
            if status_of(exc) != 429:
                tally["failures"] += 1
            if state.fatal or not is_retryable(exc):
                return False
            asked = retry_after_of(exc)
            if asked is not None and asked > self.t.max_retry_after_s:
                return False
            if status_of(exc) == 429:  # back-pressure: bounded by the patience, not by the attempts
                waited = time.monotonic() - tally["throttled_since"]
                return waited + (asked or 0.0) <= self.t.rate_limit_patience_s
            return tally["failures"] < self.t.max_attempts

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
            run.cache.renew(key, self.t.owner, seconds + self.t.claim_ttl_s)
            return seconds

        base = CacheRow(
            key,
            "failed",
            request_model=self.t.model,
            prompt_version=self.t.prompt_version,
            sampling=self.t._sampling_json if not task.sampling else dumps_sampling(self.t.sampling_for(task)),
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
            error = self.t.redact(describe_error(exc))
            asked = retry_after_of(exc)
            if asked is not None and asked > self.t.max_retry_after_s:
                error += f" (server asked to retry after {asked:.0f} s, more than max_retry_after_s)"
            elif status_of(exc) == 429:
                error += f" (rate-limited for {self.t.rate_limit_patience_s:g} s: teacher.rate_limit_patience_s)"
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
            else self.t.prices.cost(reported, prompt_tokens, completion_tokens, cached_tokens, fallback=self.t.model)
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
            if state.connect_failures >= 3 and now - state.unreachable_since >= self.t.connect_grace_s:
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
            f"cannot connect to {self.t.host()} ({self.t.redact(describe_error(exc))}): {state.connect_failures} "
            f"attempts in {since:.0f} s and no answer; is the server running and teacher.base_url right?"
        )

    # ----------------------------------------------------------------- results


class _Outcome:
    """The smallest stand-in for tenacity's RetryCallState that :meth:`OpenAITeacher._ask`'s ``wait`` reads (for
    the first attempt, which runs outside tenacity)."""

    def __init__(self, exc: BaseException):
        self.outcome = self
        self._exc = exc

    def exception(self) -> BaseException:
        return self._exc


def parse_completion(data) -> tuple[str, str | None, tuple[int, int, int], str | None]:
    """(text, finish_reason, (prompt, completion, cached prompt tokens), reported model) of a chat-completions
    JSON body, or MalformedResponse."""
    if not isinstance(data, dict):
        raise MalformedResponse(f"response is not a chat completion: {str(data)[:120]!r}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse("response has no choices")
    message = choices[0].get("message")
    text = message.get("content") if isinstance(message, dict) else None
    finish = choices[0].get("finish_reason")
    if finish == "length" and text in (None, ""):
        text = ""  # every token went to the cap (a reasoning model's hidden tokens): a real, empty answer; not retried
    elif not isinstance(text, str) or not text.strip():
        raise MalformedResponse("response has empty content")
    usage = data.get("usage")
    if not isinstance(usage, dict):
        tokens = (0, 0, 0)
    else:
        details = usage.get("prompt_tokens_details")
        cached = (details.get("cached_tokens") if isinstance(details, dict) else None) or 0
        tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), int(cached))
    model = data.get("model")
    return text, finish, tokens, model if isinstance(model, str) else None
