"""``grade_batch``: many items, every mode, all cores, in input order, never hanging.

Contract: ``grade_batch(rows, modes, timeout, workers, progress)`` returns one ``{mode: Verdict}`` per row, in the
rows' order. A row is ``(output, gold, benchmark)``, ``(output, gold, benchmark, n_options)`` or an ``Item``;
``gold`` is a string used by every mode, or (recommended, since the three modes parse golds differently) the
``{mode: gold}`` dict of ``gold_answers``. Rows are checked before any work starts (``ValueError`` naming the row).

How: rows are dealt round-robin into chunks (about 8 per worker, at most 64 rows each, so per-task overhead stays
small) run by a pebble ``ProcessPool`` of spawned processes; each process grades its chunk with ``grade_detail``,
whose own per-call timeouts (a symbolic worker per process, killed and replaced on timeout) make a slow item a recorded
``status="timeout"``. As a safety net every chunk also has a generous pool timeout; if it fires (or a process dies)
pebble replaces the process and the chunk's rows are re-run one task each, and a row that still fails gets
``status="timeout"`` / ``"error"`` verdicts naming the cause. Nothing is dropped: ``status_counts`` totals them.
``workers=1`` (or a handful of rows) grades in this process.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import as_completed
from dataclasses import dataclass

from cft_lab.eval.grading.core import BENCHMARKS, Verdict, grade_detail
from cft_lab.eval.grading.gold import MODES
from cft_lab.eval.grading.worker import STARTUP_TIMEOUT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One row of ``grade_batch``."""

    output: str
    gold: str | Mapping[str, str]
    benchmark: str
    n_options: int | None = None
    gold_quirks: tuple[str, ...] = ()


def _as_item(row, index: int) -> Item:
    if isinstance(row, Item):
        item = row
    elif isinstance(row, (tuple, list)) and len(row) in (3, 4):
        item = Item(row[0], row[1], row[2], row[3] if len(row) == 4 else None)
    else:
        raise ValueError(f"row {index}: expected (output, gold, benchmark[, n_options]) or Item, got {row!r:.200}")
    if item.benchmark not in BENCHMARKS:
        raise ValueError(f"row {index}: unknown benchmark {item.benchmark!r}; expected one of {BENCHMARKS}")
    if item.output is not None and not isinstance(item.output, str):
        raise ValueError(f"row {index} ({item.benchmark}): output must be a string, got {type(item.output).__name__}")
    return item


def _grade_items(items: list[Item], modes: tuple[str, ...], timeout: float) -> list[dict[str, Verdict]]:
    return [
        {
            mode: grade_detail(
                it.output, it.gold, it.benchmark, mode, timeout, n_options=it.n_options, gold_quirks=it.gold_quirks
            )
            for mode in modes
        }
        for it in items
    ]


def _failed(modes, status: str, why: str) -> dict[str, Verdict]:
    return {mode: Verdict(False, "", status, why) for mode in modes}


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def status_counts(results: list[dict[str, Verdict]]) -> dict[str, dict[str, int]]:
    """``{mode: {"ok": n, "timeout": n, "error": n, "correct": n}}`` over ``grade_batch`` results."""
    out: dict[str, Counter] = {}
    for row in results:
        for mode, v in row.items():
            c = out.setdefault(mode, Counter(ok=0, timeout=0, error=0, correct=0))
            c[v.status] += 1
            c["correct"] += int(v.correct)
    return {mode: dict(c) for mode, c in out.items()}


def grade_batch(
    rows, modes=MODES, timeout: float = 3.0, workers: int | None = None, progress: bool = True
) -> list[dict[str, Verdict]]:
    """Grade every row in every mode (module doc)."""
    from tqdm.auto import tqdm

    modes = tuple(modes)
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"unknown grading mode {mode!r}; expected one of {MODES}")
    items = [_as_item(r, i) for i, r in enumerate(rows)]
    workers = max(1, workers or _cpus())
    results: list[dict[str, Verdict] | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc="grade", unit="item", disable=not progress)
    try:
        if workers == 1 or len(items) <= 2 * workers:
            for i, it in enumerate(items):
                results[i] = _grade_items([it], modes, timeout)[0]
                bar.update(1)
        else:
            _run_pool(items, modes, timeout, workers, results, bar)
    finally:
        bar.close()
    counts = status_counts(results)
    bad = {m: (c["timeout"], c["error"]) for m, c in counts.items() if c["timeout"] or c["error"]}
    if bad:
        log.warning("grade_batch: (timeouts, errors) per mode: %s", bad)
    return results


def _run_pool(items, modes, timeout, workers, results, bar) -> None:
    from pebble import ProcessPool

    n_chunks = max(workers, math.ceil(len(items) / 64), min(len(items), workers * 8))
    # rows are dealt out round-robin, so slow items that sit together (one hard problem, several outputs) end up
    # in different processes
    chunks = [list(range(k, len(items), n_chunks)) for k in range(n_chunks)]
    per_item = len(modes) * (2 * timeout + 5)  # two worker calls per mode at most, plus in-process work

    def limit(n: int) -> float:
        return STARTUP_TIMEOUT + n * per_item

    retry: list[int] = []
    with ProcessPool(max_workers=workers, context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            pool.schedule(_grade_items, args=([items[i] for i in idx], modes, timeout), timeout=limit(len(idx))): idx
            for idx in chunks
            if idx
        }
        for fut in as_completed(futures):
            idx = futures[fut]
            try:
                for i, verdicts in zip(idx, fut.result()):
                    results[i] = verdicts
                bar.update(len(idx))
            except Exception as e:  # noqa: BLE001 (safety net: pebble timeout, dead process, ...)
                log.warning(
                    "grade_batch: a chunk of %d rows failed (%s: %s); re-running its rows one by one",
                    len(idx),
                    type(e).__name__,
                    e,
                )
                retry.extend(idx)
        singles = {pool.schedule(_grade_items, args=([items[i]], modes, timeout), timeout=limit(1)): i for i in retry}
        for fut in as_completed(singles):
            i = singles[fut]
            try:
                results[i] = fut.result()[0]
            except FutureTimeout:
                results[i] = _failed(
                    modes,
                    "timeout",
                    f"{items[i].benchmark}: row {i} exceeded the {limit(1):g}s safety limit of its grading process",
                )
            except Exception as e:  # noqa: BLE001
                results[i] = _failed(modes, "error", f"{items[i].benchmark}: row {i}: {type(e).__name__}: {e}")
            bar.update(1)
