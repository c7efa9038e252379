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
* the sync mode's machinery is :mod:`cft_lab.teachers.sync`; ``mode="batch"`` sends the same requests through the
  Batch API instead (:mod:`cft_lab.teachers.batch`);
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
import logging
import os
import socket
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import openai

from cft_lab.prompts.teacher import default_sampling, render_messages, template_hash
from cft_lab.teachers.base import TeacherResult, TeacherTask, failed_result, redact
from cft_lab.teachers.cache import dumps_sampling, loads_sampling, request_key
from cft_lab.teachers.pricing import PriceTable

log = logging.getLogger(__name__)


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
        """(cache key, messages) of one task: the pinned teacher prompt, or the task's own messages (kind
        ``generate``), asked with :meth:`sampling_for`."""
        if task.messages is not None:
            messages = [dict(m) for m in task.messages]
        else:
            messages = render_messages(task.kind, task.question, task.response, self.prompt_version)
        return request_key(self.model, messages, self.sampling_for(task)), messages

    def sampling_for(self, task: TeacherTask) -> dict:
        """The sampling parameters one task is asked with: the teacher's, plus the task's own (a sample's seed)."""
        return {**self.sampling, **task.sampling} if task.sampling else self.sampling

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
            from cft_lab.teachers.sync import SyncRun

            coro = SyncRun(self).run(list(tasks), retry_failed, progress)
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
