"""Statistics over training seeds: one arm trained N times (``run.seeds=N``) and graded on the same items.

Units: percent / percentage points, like ``cft_lab.eval.metrics``'s report-facing dicts. Inputs are per-seed lists of
per-item grades, ``grades[s][i]`` = seed s got item i right, every seed graded on the same items in the same order.

``seed_summary`` -- the arm's accuracy as the mean over seeds, the spread of the seeds' accuracies (sample standard
  deviation, ddof = 1: how much retraining alone moves the number), and a 95% CI *pooled over items × seeds*: a
  percentile bootstrap that resamples items, each carrying all its seeds (the per-item mean over seeds), because the
  seeds' grades of one item are correlated (an easy item is easy for every seed) and resampling (item, seed) pairs
  as if independent would make the interval too narrow. With one seed it is the ordinary item bootstrap.

``paired_over_seeds`` -- arm B against arm A (e.g. CFT against the best SFT row) on the same items, seed s of A
  paired with seed s of B (seeds are exchangeable, so which is paired with which does not matter in expectation).
  The exact McNemar test runs on the discordant (item, seed) pairs pooled over seeds: b01 = pairs A got wrong and B
  right, b10 = the reverse, p = min(1, 2 P(X <= min(b01, b10))), X ~ Bin(b01 + b10, 1/2). It treats the pairs as
  independent, which the repeated items are not, so its p-value is optimistic when seeds agree item by item; the
  difference B − A therefore also gets an item-clustered bootstrap CI (items resampled with all their seeds), the
  interval to read. Both are reported side by side.

>>> s = seed_summary([[1, 1, 1, 0], [1, 0, 0, 0]])         # seed accuracies 75 and 25
>>> s["mean"], s["seed_accuracies"], round(s["sd"], 2)
(50.0, [75.0, 25.0], 35.36)
>>> p = paired_over_seeds([[0, 0, 1, 1], [0, 1, 1, 1]], [[1, 1, 1, 0], [1, 1, 1, 1]])
>>> p["pairs"], p["b01"], p["b10"], p["diff"], p["p_value"]
(8, 3, 1, 25.0, 0.625)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np

from cft_lab.eval.metrics import bootstrap_ci, mcnemar_exact_p


def _grid(grades: Sequence[Sequence[bool]], name: str) -> np.ndarray:
    """Seeds x items as a bool array; every seed must grade the same number of items (0/1 or bools only)."""
    rows = [np.asarray(g) for g in grades]
    if not rows or any(r.ndim != 1 for r in rows) or len({r.size for r in rows}) != 1 or rows[0].size == 0:
        raise ValueError(f"{name}: need >= 1 seed, each a flat, non-empty list of grades of the same items")
    arr = np.stack(rows)
    if arr.dtype != bool and not np.isin(arr, (0, 1)).all():
        raise TypeError(f"{name} must hold booleans (or 0/1)")
    return arr.astype(bool)


def seed_summary(grades: Sequence[Sequence[bool]], *, n_boot: int = 10000, seed: int = 0) -> dict:
    """``mean`` (percent), ``sd`` across seeds (NaN with one seed), ``seed_accuracies``, ``seeds``, ``n`` (items) and
    the pooled 95% CI ``ci_low``/``ci_high`` (item-clustered bootstrap of the per-item mean over seeds)."""
    g = _grid(grades, "grades")
    per_seed = [100.0 * float(row.mean()) for row in g]
    lo, hi = bootstrap_ci(g.mean(axis=0), n_boot=n_boot, seed=seed)
    return {
        "mean": statistics.fmean(per_seed),
        "sd": statistics.stdev(per_seed) if len(per_seed) > 1 else float("nan"),
        "seed_accuracies": per_seed,
        "seeds": len(per_seed),
        "n": int(g.shape[1]),
        "correct": int(g.sum()),
        "ci_low": 100.0 * lo,
        "ci_high": 100.0 * hi,
    }


def paired_over_seeds(
    a: Sequence[Sequence[bool]], b: Sequence[Sequence[bool]], *, n_boot: int = 10000, seed: int = 0
) -> dict:
    """B against A over items × seeds (see the module doc): ``pairs``, ``b01``, ``b10``, ``p_value`` (exact McNemar on
    the pooled discordant pairs), ``accuracy_a``/``accuracy_b``, ``diff`` = B − A in points with its item-clustered
    bootstrap 95% CI ``diff_low``/``diff_high``, ``seeds`` and ``n`` (items)."""
    ga, gb = _grid(a, "a"), _grid(b, "b")
    if ga.shape != gb.shape:
        raise ValueError(f"paired_over_seeds needs the same seeds x items in both arms: {ga.shape} != {gb.shape}")
    b01 = int((~ga & gb).sum())
    b10 = int((ga & ~gb).sum())
    per_item_diff = gb.mean(axis=0) - ga.mean(axis=0)
    lo, hi = bootstrap_ci(per_item_diff, n_boot=n_boot, seed=seed)
    pairs = int(ga.size)
    return {
        "seeds": int(ga.shape[0]),
        "n": int(ga.shape[1]),
        "pairs": pairs,
        "accuracy_a": 100.0 * float(ga.mean()),
        "accuracy_b": 100.0 * float(gb.mean()),
        "b01": b01,
        "b10": b10,
        "p_value": mcnemar_exact_p(b01, b10),
        "diff": 100.0 * (b01 - b10) / pairs,
        "diff_low": 100.0 * lo,
        "diff_high": 100.0 * hi,
    }
