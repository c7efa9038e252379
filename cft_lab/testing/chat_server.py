"""TEST SERVER: a fault-injecting OpenAI-compatible chat-completions server on 127.0.0.1 (not a model).

It answers ``POST /v1/chat/completions`` like an OpenAI-compatible server, with deterministic text and ``usage``
token counts, after a configurable latency, and injects faults on demand so the teacher's retry, cache and budget
logic can be tested over real HTTP:

* ``429`` (with ``Retry-After`` and/or ``retry-after-ms``), ``500``, ``503`` (with ``Retry-After``), ``400``, ``401``;
* ``hang``: no answer for ``hang_s`` seconds (past the client's timeout);
* ``disconnect``: the connection is closed without a response;
* ``malformed_json`` (truncated JSON body), ``not_json`` (an HTML body), ``missing_choices``, ``empty_content``.

A fault is chosen per request, first from ``per_key`` (the k-th request carrying a given cache key gets
``per_key[k]``), then from ``schedule`` (the i-th request received gets ``schedule[i]``), then from ``rates``
(fault -> probability, drawn deterministically from the key, its request count and ``seed``); otherwise ``ok``.

The reply to a critique request (a system message that mentions ``Conclusion``) ends with
``Conclusion: right [END]`` or ``Conclusion: wrong [END]``, derived from the request's cache key; any other
request gets a text ending ``Answer: N``. ``usage`` is a fixed ``usage_tokens=(prompt, completion)`` or about one
token per 4 characters. Counters (``requests_by_key``, ``ok_by_key``, ``faults``, ``max_in_flight``) are
attributes in-thread and JSON at ``GET /stats`` for subprocess use. ``capacity`` bounds requests in flight: over
it a request waits (``over_capacity="queue"``) or gets a 429 (``"reject"``) with ``retry-after-ms: 50``, or with
``Retry-After: <over_capacity_retry_after>`` seconds when that is set (as a rate-limited account answers).

The OpenAI Files and Batch APIs (``/v1/files``, ``/v1/batches``) are served too, from :mod:`.batch_api`
(``server.batch``: its latency, an expiring or failing batch, its counters).

In-thread (tests)::

    with ChatServer(latency=0.2, capacity=64, faults=FaultPlan(per_key=["429", "ok"])) as server:
        client = openai.OpenAI(base_url=server.url, api_key="x")

Subprocess: ``python -m cft_lab.testing.chat_server --port 0 --latency 0.2 --capacity 64 --rate 500=0.1``
prints ``chat_server listening on http://127.0.0.1:PORT/v1`` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cft_lab.teachers.cache import key_of_body

log = logging.getLogger(__name__)

FAULTS = (
    "ok",
    "429",
    "500",
    "503",
    "400",
    "401",
    "hang",
    "disconnect",
    "malformed_json",
    "not_json",
    "missing_choices",
    "empty_content",
)


@dataclass
class FaultPlan:
    """Which requests fail and how (see the module docstring for the order of precedence)."""

    per_key: list[str] = field(default_factory=list)
    schedule: list[str] = field(default_factory=list)
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    retry_after: float | None = 1.0  # seconds sent in Retry-After on 429/503 (None: header left out)
    retry_after_ms: float | None = None  # milliseconds sent in retry-after-ms (None: header left out)
    hang_s: float = 30.0

    def __post_init__(self) -> None:
        for f in [*self.per_key, *self.schedule, *self.rates]:
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}; expected one of {FAULTS}")
        if sum(self.rates.values()) > 1.0:
            raise ValueError(f"fault rates sum to more than 1: {self.rates}")

    def choose(self, key: str, nth_for_key: int, nth_overall: int) -> str:
        if nth_for_key < len(self.per_key):
            return self.per_key[nth_for_key]
        if nth_overall < len(self.schedule):
            return self.schedule[nth_overall]
        if self.rates:
            h = hashlib.sha256(f"{self.seed}:{key}:{nth_for_key}".encode()).digest()
            u = int.from_bytes(h[:8], "big") / 2**64
            acc = 0.0
            for fault, p in sorted(self.rates.items()):
                acc += p
                if u < acc:
                    return fault
        return "ok"


def reply_text(key: str, messages: list[dict]) -> str:
    """The deterministic answer for a request: a critique with a Conclusion tag, or an answer.

    >>> reply_text("ab" * 32, [{"role": "system", "content": "... 'Conclusion: right/wrong [END]'."}])[-23:]
    'Conclusion: wrong [END]'
    """
    system = " ".join(str(m.get("content", "")) for m in messages or [] if m.get("role") == "system")
    everything = " ".join(str(m.get("content", "")) for m in messages or [])
    h = int(key[:8], 16)
    if "[[rating]]" in everything:  # an MT-Bench judge prompt (FastChat's single-answer grading)
        return f"The answer is helpful and mostly accurate (ref {key[:8]}). Rating: [[{1 + h % 10}]]"
    if "Conclusion" in system:
        verdict = "right" if h % 2 == 0 else "wrong"
        return f"The student's work was checked line by line (ref {key[:8]}).\nConclusion: {verdict} [END]"
    return f"Working through the question (ref {key[:8]}).\nAnswer: {h % 1000}"


#: Hidden reasoning tokens a "reasoning model" of this server spends before answering: a smaller
#: ``max_completion_tokens`` gets an empty answer at finish_reason "length", as from OpenAI's reasoning models.
REASONING_TOKENS = 64


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default listen backlog of 5 refuses bursts (Python's default)
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class ChatServer:
    """The server, its configuration and its counters; ``start()``/``stop()`` or use as a context manager."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        capacity: int | None = None,
        over_capacity: str = "queue",
        over_capacity_retry_after: float | None = None,
        faults: FaultPlan | None = None,
        model_alias: dict[str, str] | None = None,
        usage_tokens: tuple[int, int] | None = None,
        api_key: str | None = None,
        reasoning_models: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if over_capacity not in ("queue", "reject"):
            raise ValueError(f"over_capacity must be 'queue' or 'reject', got {over_capacity!r}")
        self.latency, self.capacity, self.over_capacity = latency, capacity, over_capacity
        self.over_capacity_retry_after = over_capacity_retry_after
        self.faults = faults or FaultPlan()
        self.model_alias = dict(model_alias or {})
        self.usage_tokens = usage_tokens
        self.api_key = api_key  # when set, requests without "Authorization: Bearer <api_key>" get a 401
        # models that answer as OpenAI's reasoning models do: a 400 for temperature, top_p, max_tokens or a system
        # message (as o1-mini), and an answer at finish_reason "length" when max_completion_tokens is too small
        self.reasoning_models = tuple(reasoning_models)
        self.bodies: list[dict] = []  # every chat-completions request body received, in order
        self._slots = threading.BoundedSemaphore(capacity) if capacity else None
        self._lock = threading.Lock()
        self.requests_by_key: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = {}  # key -> time.monotonic() of each request
        self.ok_by_key: Counter[str] = Counter()
        self.faults_seen: Counter[str] = Counter()
        self.total = 0
        self.in_flight = 0
        self.max_in_flight = 0
        from cft_lab.testing.batch_api import BatchAPI

        self.batch = BatchAPI(self)
        self._httpd = _Server((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ChatServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"chat_server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self) -> dict:
        with self._lock:
            return {
                "total": self.total,
                "requests_by_key": dict(self.requests_by_key),
                "ok_by_key": dict(self.ok_by_key),
                "faults": dict(self.faults_seen),
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
            }

    # ----------------------------------------------------------------- one request
    def _admit(self, key: str) -> str:
        with self._lock:
            nth_key = self.requests_by_key[key]
            self.requests_by_key[key] += 1
            self.arrivals.setdefault(key, []).append(time.monotonic())
            nth = self.total
            self.total += 1
            fault = self.faults.choose(key, nth_key, nth)
            self.faults_seen[fault] += 1
            return fault

    def _enter(self) -> bool:
        if self._slots is not None:
            if self.over_capacity == "reject":
                if not self._slots.acquire(blocking=False):
                    return False
            else:
                self._slots.acquire()
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return True

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
        if self._slots is not None:
            self._slots.release()

    def completion(self, body: dict, key: str, *, empty: bool = False) -> dict:
        model = body.get("model")
        messages = body.get("messages") or []
        text = "" if empty else reply_text(key, messages)
        n = int(body.get("n") or 1)
        finish = "stop"
        if self.usage_tokens is not None:
            prompt_tokens, completion_tokens = self.usage_tokens
        else:
            chars = sum(len(str(m.get("content", ""))) for m in messages)
            prompt_tokens, completion_tokens = max(1, chars // 4), max(1, len(text) // 4) * n
        cap = body.get("max_completion_tokens")
        if model in self.reasoning_models and cap is not None and int(cap) < REASONING_TOKENS:
            text, finish, completion_tokens = "", "length", int(cap)  # the reasoning used every token allowed
        return {
            "id": f"chatcmpl-{key[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_alias.get(model, model),
            "system_fingerprint": "fp_cft_lab_test",
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": None,
                }
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _make_handler(server: ChatServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers and the SDK's connection pool expect
        # headers and body go out in two writes: with Nagle's algorithm on, the body waits for the client's
        # delayed ACK (~40 ms on Linux), which added 20% to every 200 ms request
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):  # quiet: one line per request would flood test output
            log.debug("chat_server: " + fmt, *args)

        def _send(
            self, status: int, payload: bytes, content_type: str = "application/json", headers: dict | None = None
        ) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _json(self, status: int, obj: dict, headers: dict | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers=headers)

        def _error(self, status: int, message: str, kind: str, headers: dict | None = None) -> None:
            self._json(status, {"error": {"message": message, "type": kind, "param": None, "code": None}}, headers)

        def _batch_route(self, method: str, raw: bytes) -> bool:
            """The Files and Batch APIs (cft_lab.testing.batch_api); False when the path is not theirs."""
            from cft_lab.testing.batch_api import route

            return route(server, self, method, raw)

        def do_GET(self):
            if self._batch_route("GET", b""):
                return
            if self.path.rstrip("/") in ("/health", "/v1/health"):
                self._json(200, {"status": "ok"})
            elif self.path.rstrip("/") == "/stats":
                self._json(200, server.stats())
            elif self.path.rstrip("/") == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": "cft-lab-test", "object": "model"}]})
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self._batch_route("POST", raw):
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._error(404, f"no route {self.path}", "not_found")
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._error(400, "request body is not JSON", "invalid_request_error")
                return
            if server.api_key is not None and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                # echo the key presented, as some servers do: the client must redact it everywhere
                presented = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                self._error(401, f"Incorrect API key provided: {presented}.", "invalid_request_error")
                return
            with server._lock:
                server.bodies.append(body)
            if body.get("model") in server.reasoning_models:
                refused = [k for k in ("temperature", "top_p", "max_tokens") if k in body]
                if any(m.get("role") == "system" for m in body.get("messages") or []):
                    refused.append("messages[].role=system")
                if refused:
                    self._error(400, f"Unsupported parameter: {', '.join(refused)}", "invalid_request_error")
                    return
            key = key_of_body(body)
            fault = server._admit(key)
            if not server._enter():
                with server._lock:
                    server.faults_seen[fault] -= 1
                    server.faults_seen["over_capacity"] += 1
                wait = server.over_capacity_retry_after
                headers = {"retry-after-ms": "50"} if wait is None else {"Retry-After": f"{wait:g}"}
                self._error(429, "over capacity", "rate_limit_error", headers)
                return
            try:
                if server.latency:
                    time.sleep(server.latency)
                self._answer(fault, body, key)
            finally:
                server._leave()

        def _retry_headers(self) -> dict:
            plan, h = server.faults, {}
            if plan.retry_after is not None:
                h["Retry-After"] = f"{plan.retry_after:g}"
            if plan.retry_after_ms is not None:
                h["retry-after-ms"] = f"{plan.retry_after_ms:g}"
            return h

        def _answer(self, fault: str, body: dict, key: str) -> None:
            if fault == "ok":
                self._json(200, server.completion(body, key))
                with server._lock:
                    server.ok_by_key[key] += 1
            elif fault == "429":
                self._error(429, "Rate limit reached (injected).", "rate_limit_error", self._retry_headers())
            elif fault == "503":
                self._error(503, "Service unavailable (injected).", "server_error", self._retry_headers())
            elif fault in ("500", "400", "401"):
                self._error(
                    int(fault), f"injected HTTP {fault}", "server_error" if fault == "500" else "invalid_request_error"
                )
            elif fault == "hang":
                time.sleep(server.faults.hang_s)
                self._json(200, server.completion(body, key))
            elif fault == "disconnect":
                self.close_connection = True
            elif fault == "malformed_json":
                self._send(200, b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": [{"ind')
            elif fault == "not_json":
                self._send(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
            elif fault == "missing_choices":
                obj = server.completion(body, key)
                del obj["choices"]
                self._json(200, obj)
            elif fault == "empty_content":
                self._json(200, server.completion(body, key, empty=True))
            else:  # pragma: no cover - FaultPlan validates names
                raise AssertionError(fault)

    return Handler


# --------------------------------------------------------------------------- command line
def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep:
            raise SystemExit(f"--{what} expects NAME=VALUE, got {item!r}")
        out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cft_lab.testing.chat_server", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", help="write the chosen port here once listening")
    p.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    p.add_argument("--capacity", type=int, default=None, help="max requests in flight")
    p.add_argument("--over-capacity", choices=("queue", "reject"), default="queue")
    p.add_argument("--over-capacity-retry-after", type=float, default=None, help="Retry-After seconds of a rejection")
    p.add_argument("--rate", action="append", default=[], help="FAULT=PROBABILITY (repeatable)")
    p.add_argument("--schedule", default="", help="comma-separated faults for the first requests received")
    p.add_argument("--per-key", default="", help="comma-separated faults for the first requests of each key")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retry-after", type=float, default=1.0)
    p.add_argument("--retry-after-ms", type=float, default=None)
    p.add_argument("--hang-s", type=float, default=30.0)
    p.add_argument("--usage", default=None, help="fixed PROMPT,COMPLETION token counts")
    p.add_argument("--model-alias", action="append", default=[], help="ASKED=REPORTED (repeatable)")
    p.add_argument("--api-key-env", default=None, help="require the key held in this environment variable")
    a = p.parse_args(argv)
    plan = FaultPlan(
        per_key=[f for f in a.per_key.split(",") if f],
        schedule=[f for f in a.schedule.split(",") if f],
        rates={k: float(v) for k, v in _pairs(a.rate, "rate").items()},
        seed=a.seed,
        retry_after=a.retry_after,
        retry_after_ms=a.retry_after_ms,
        hang_s=a.hang_s,
    )
    usage = tuple(int(x) for x in a.usage.split(",")) if a.usage else None
    api_key = os.environ.get(a.api_key_env) if a.api_key_env else None
    if a.api_key_env and not api_key:
        raise SystemExit(f"--api-key-env {a.api_key_env}: that environment variable is empty")
    server = ChatServer(
        latency=a.latency,
        capacity=a.capacity,
        over_capacity=a.over_capacity,
        over_capacity_retry_after=a.over_capacity_retry_after,
        faults=plan,
        model_alias=_pairs(a.model_alias, "model-alias"),
        usage_tokens=usage,
        api_key=api_key,
        host=a.host,
        port=a.port,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(server.port))
        os.replace(a.port_file + ".tmp", a.port_file)
    print(f"chat_server listening on {server.url}", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
