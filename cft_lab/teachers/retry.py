"""Which teacher-request failures are retried, and how long to wait (used by the ``openai`` teacher).

The SDK's own retries (``max_retries``) honour ``Retry-After``/``retry-after-ms`` and cover 408/409/429/5xx,
timeouts and connection errors, but not malformed 200 bodies (non-JSON, no ``choices``, empty content), they do
not report how many attempts a request took, and they give up on a ``Retry-After`` over two minutes. So the
teacher sets ``max_retries=0`` and retries with tenacity under one policy for every fault:

==========================================  ========================================================
fault                                       policy
==========================================  ========================================================
429 (rate limit)                            back-pressure, not a failed attempt: the adaptive window
                                            shrinks (``cft_lab.teachers.adaptive``) and the request waits
                                            its ``Retry-After`` (backoff without one), retried until
                                            ``rate_limit_patience_s`` has passed
other retried status with ``Retry-After``  wait what the server asks (``retry-after-ms`` first), plus
                                            up to 10% jitter; every request of the run pauses as long
408, 409, 5xx without it                    exponential backoff with jitter (``initial * 2**(n-1) + U(0, initial)``
                                            after the n-th failure, at most ``max_s``)
timeout, connection error / reset           the same backoff; a server that cannot be connected to at all
                                            stops the run (``OpenAITeacher``: ``connect_grace_s``)
malformed body (not JSON, no choices,       the same backoff
empty content)
400, 422 and other 4xx                      not retried: the row fails at once (the request itself is bad)
401, 403, 404                               fatal for the whole run (wrong key or model): stop, raise
``Retry-After`` longer than the maximum     not retried: the row fails, naming the asked delay
==========================================  ========================================================

After ``max_attempts`` attempts (429s not counted) the row is stored as failed with the last error. The first attempt
of each request runs outside tenacity (most succeed; building a retry loop per request cost ~0.15 ms of CPU), and a
tenacity loop takes over after a retryable failure.

>>> parse_retry_after({"retry-after-ms": "250", "retry-after": "3"})  # the SDK's headers are case-insensitive
0.25
>>> parse_retry_after({"retry-after": "2"}), parse_retry_after({}) is None
(2.0, True)
"""

from __future__ import annotations

import email.utils
import math
import random
import time

import openai
from tenacity.wait import wait_base

RETRY_STATUSES = (408, 409, 429)
FATAL_STATUSES = (401, 403, 404)


class MalformedResponse(Exception):
    """A 200 response that is not a usable chat completion (retried like a server error)."""


class TeacherFatalError(RuntimeError):
    """A failure that concerns every request (401/403/404: the key, permissions or model): the run stops."""


def parse_retry_after(headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None if absent.

    Written here because the SDK's parser is private (``_parse_retry_after_header``).
    """
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    value = headers.get("retry-after")
    if value:
        parsed = email.utils.parsedate_tz(value)
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None


def status_of(exc: BaseException) -> int | None:
    return exc.status_code if isinstance(exc, openai.APIStatusError) else None


def retry_after_of(exc: BaseException) -> float | None:
    if isinstance(exc, openai.APIStatusError):
        return parse_retry_after(exc.response.headers)
    return None


def is_fatal(exc: BaseException) -> bool:
    return status_of(exc) in FATAL_STATUSES


def is_connect_error(exc: BaseException) -> bool:
    """The request never reached a server (refused, no route, unknown host): a ``ConnectError`` of the SDK's HTTP
    library (``httpx`` or, in recent SDKs, ``httpx2``: matched by name) under its ``APIConnectionError``. A timeout or
    a connection the server closed is not one (the server was there)."""
    import socket

    if not isinstance(exc, openai.APIConnectionError) or isinstance(exc, openai.APITimeoutError):
        return False
    cause: BaseException | None = exc
    while cause is not None:
        if type(cause).__name__ == "ConnectError" or isinstance(cause, (ConnectionRefusedError, socket.gaierror)):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (MalformedResponse, openai.APIConnectionError)):  # APITimeoutError is a subclass
        return True
    status = status_of(exc)
    return status is not None and (status in RETRY_STATUSES or status >= 500)


class wait_retry_after_or_backoff(wait_base):
    """Wait ``Retry-After`` when the failed attempt carried one, else exponential backoff with jitter:
    ``min(max_s, initial_s * 2**(n-1) + U(0, initial_s))`` after the n-th failed attempt.

    ``offset`` is added to tenacity's attempt number, for a loop that took over after ``offset`` attempts.
    """

    def __init__(self, initial_s: float, max_s: float, on_retry_after=None, offset: int = 0):
        self.initial_s, self.max_s, self.offset = initial_s, max_s, offset
        self.on_retry_after = on_retry_after  # called with the seconds asked (a run-wide pause)

    def seconds(self, exc: BaseException | None, failed_attempts: int) -> float:
        asked = retry_after_of(exc) if exc is not None else None
        if asked is not None and asked > 0:
            wait = asked + random.uniform(0.0, min(1.0, 0.1 * asked))
            if self.on_retry_after is not None:
                self.on_retry_after(wait)
            return wait
        backoff = self.initial_s * 2.0 ** min(failed_attempts - 1, 60) + random.uniform(0.0, self.initial_s)
        return min(self.max_s, backoff)

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return self.seconds(exc, retry_state.attempt_number + self.offset)


def describe_error(exc: BaseException) -> str:
    """A one-line error for the stored row (the caller redacts the key)."""
    status = status_of(exc)
    msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = f"HTTP {status}: {msg}" if status is not None else f"{type(exc).__name__}: {msg}"
    return " ".join(text.split())[:500]
