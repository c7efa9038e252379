"""Adaptive concurrency for the ``openai`` teacher: how many requests it keeps in flight, learned from the server.

A rate-limited account answers the excess with ``429`` (and ``Retry-After``); a fixed concurrency above the server's
capacity then spends most requests on rejections, and one below it wastes capacity. :class:`AdaptiveLimit` is an
AIMD window (as TCP's congestion control, and as client libraries such as Netflix's concurrency-limits do):

* **multiplicative decrease**: a 429 sets the window to ``decrease`` x the number of requests that were in flight when
  it was sent (at least 1), once per window: the 429s of requests sent before the last decrease took effect belong
  to the old window and do not lower it again;
* **additive increase**: each answer adds ``1 / window``, i.e. about one more request in flight per round trip, up to
  ``teacher.concurrency``;
* **the server's own numbers**: ``x-ratelimit-remaining-requests`` (or ``-tokens``) at 0 holds every new request
  until ``x-ratelimit-reset-requests`` (``-tokens``) has passed, and ``x-ratelimit-limit-requests`` is reported.

A request rejected with 429 waits its ``Retry-After`` (the retry policy: ``cft_lab.teachers.retry``) without holding a
slot, so the other requests keep the window full. Written here because no maintained Python library adapts an
asyncio client's concurrency to 429s (tenacity retries one call; aiolimiter is a fixed-rate bucket).

>>> parse_duration("6m0s"), parse_duration("1.5s"), parse_duration("250ms"), parse_duration("2")
(360.0, 1.5, 0.25, 2.0)
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Mapping

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Seconds of an ``x-ratelimit-reset-*`` value (``1s``, ``6m0s``, ``20ms``, plain seconds); None if unreadable."""
    if not text:
        return None
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(a) * scale[b] for a, b in parts)


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


class AdaptiveLimit:
    """The AIMD window (see the module doc). One per run, used from one event loop."""

    def __init__(self, max_limit: int, *, decrease: float = 0.8, min_limit: int = 1):
        self.max_limit, self.min_limit, self.decrease = max_limit, min_limit, decrease
        self.limit = float(max_limit)
        self.in_flight = 0
        self.max_in_flight = 0
        self.sent = 0  # sequence number of the last request sent
        self._window_start = 0  # requests sent up to here belong to a window that was already lowered
        self.hold_until = 0.0  # x-ratelimit-remaining = 0: no new request before this (monotonic)
        self.throttled = 0  # 429 answers
        self.decreases = 0
        self.in_flight_at_429: list[int] = []
        self._first_window: list[int] = []
        self._first_window_end: int | None = None
        self.declared_limit: int | None = None  # x-ratelimit-limit-requests, when the server sends it
        self._cond = asyncio.Condition()

    async def acquire(self) -> tuple[int, int]:
        """Wait for a free slot (and for a server-announced reset); returns (sequence number, in flight at send)."""
        async with self._cond:
            while True:
                wait = self.hold_until - time.monotonic()
                if self.in_flight < max(self.min_limit, int(self.limit)) and wait <= 0:
                    break
                try:
                    await asyncio.wait_for(self._cond.wait(), timeout=wait if wait > 0 else None)
                except asyncio.TimeoutError:
                    pass
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.sent += 1
            return self.sent, self.in_flight

    async def release(self) -> None:
        async with self._cond:
            self.in_flight -= 1
            self._cond.notify(1)

    def on_answer(self, headers: Mapping[str, str] | None) -> None:
        """An answer (any status but 429): grow the window by 1/window; honour x-ratelimit headers."""
        self.limit = min(float(self.max_limit), self.limit + 1.0 / max(self.limit, 1.0))
        self._headers(headers)

    def on_throttle(self, seq: int, in_flight_at_send: int, headers: Mapping[str, str] | None) -> None:
        """A 429 for the request sent as ``seq`` with ``in_flight_at_send`` in flight: shrink once per window."""
        self.throttled += 1
        if self._first_window_end is not None and seq > self._first_window_end:
            self.in_flight_at_429.append(in_flight_at_send)
        else:  # requests of the opening burst measure how many were sent at once, not the limit
            self._first_window.append(in_flight_at_send)
        if seq > self._window_start:
            self.limit = max(float(self.min_limit), min(self.limit, in_flight_at_send * self.decrease))
            self._window_start = self.sent
            self.decreases += 1
            if self._first_window_end is None:
                self._first_window_end = self.sent
        self._headers(headers)

    def _headers(self, headers: Mapping[str, str] | None) -> None:
        if not headers:
            return
        declared = _int(headers.get("x-ratelimit-limit-requests"))
        if declared is not None:
            self.declared_limit = declared
        for kind in ("requests", "tokens"):
            if _int(headers.get(f"x-ratelimit-remaining-{kind}")) == 0:
                reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
                if reset is not None:
                    self.hold_until = max(self.hold_until, time.monotonic() + reset)

    def report(self) -> dict:
        """What the run learned: 429s, the window it settled on, and the in-flight level the server refused at."""
        seen = self.in_flight_at_429 or self._first_window
        return {
            "throttled_429": self.throttled,
            "window_decreases": self.decreases,
            # the in-flight level the server refused at, less the refused request itself
            "limit_found": int(statistics.median(seen)) - 1 if seen else None,
            "final_window": round(self.limit, 1),
            "max_in_flight": self.max_in_flight,
            "declared_limit_requests": self.declared_limit,
        }
