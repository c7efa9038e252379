"""Length-matched subsets (CFT-Short, v4 Table 10): keep the pairs of one arm whose completion lengths follow another
arm's distribution.

The paper says only that CFT-Short's examples were "chosen to have token lengths similar to the SFT data" (selection
rule and size unknown, docs/protocol.md §1.7). The rule here, documented so that it can be re-tested:

1. Cut the reference arm's completion token lengths (the SFT arm: the noisy responses) at its quantiles into
   ``bins`` equal-mass bins.
2. Put every candidate (a CFT pair, by its critique's token length) into the bin its length falls in; candidates
   shorter than the shortest or longer than the longest reference length fall into none.
3. The matched set has the same share of examples in every bin as the reference: its size ``m`` is the largest for
   which every bin has enough candidates (``m = min_b count_b / share_b``), and each bin keeps the ``share_b * m``
   candidates with the smallest ``sha256(seed:id)`` (a seeded sample that does not depend on file order).
4. A reference bin that no candidate falls into cannot be matched: its share is reported as
   ``unmatched_reference_share`` and the other bins' shares are renormalised (critiques cannot be made shorter than
   the shortest one written). When no bin can be matched, the rule refuses.

:func:`match_lengths` returns the kept ids and a report: the reference, candidate and kept distributions (quantiles),
their two-sample Kolmogorov-Smirnov statistics, and the sizes.

>>> long = {f"c{i}": 40 + i for i in range(60)} | {f"s{i}": 5 + i for i in range(20)}  # mostly long candidates
>>> keep, report = match_lengths(long, [5 + i for i in range(20)] * 3 + [45, 50], bins=4)
>>> report["kept"], report["ks_kept"] < report["ks_candidates"]
(21, True)
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Mapping, Sequence

import numpy as np

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


def _key(seed: int, item: str) -> str:
    return hashlib.sha256(f"{seed}:{item}".encode()).hexdigest()


def ks_statistic(a: Sequence[float], b: Sequence[float]) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs.

    >>> ks_statistic([1, 2, 3], [1, 2, 3]), ks_statistic([1, 2], [3, 4])
    (0.0, 1.0)
    """
    if not len(a) or not len(b):
        return float("nan")
    xa, xb = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([xa, xb])
    cdf_a = np.searchsorted(xa, grid, side="right") / len(xa)
    cdf_b = np.searchsorted(xb, grid, side="right") / len(xb)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def describe(lengths: Sequence[float]) -> dict:
    """Count, mean and quantiles of a length distribution."""
    if not len(lengths):
        return {"n": 0}
    arr = np.asarray(lengths, float)
    return {
        "n": int(arr.size),
        "mean": round(float(arr.mean()), 2),
        **{f"p{int(q * 100)}": float(np.quantile(arr, q)) for q in QUANTILES},
    }


def match_lengths(
    candidates: Mapping[str, int], reference: Sequence[int], *, bins: int = 10, seed: int = 0
) -> tuple[list[str], dict]:
    """(ids kept, report): the subset of ``candidates`` (id -> length) distributed like ``reference`` (see the
    module doc)."""
    if not candidates or not len(reference):
        raise ValueError("length matching needs candidates and a reference distribution")
    ref = np.sort(np.asarray(reference, float))
    edges = sorted(set(float(np.quantile(ref, k / bins)) for k in range(1, bins)))  # inner bin edges
    share = np.bincount([bisect_right(edges, x) for x in ref], minlength=len(edges) + 1) / len(ref)
    by_bin: dict[int, list[str]] = {}
    for item, length in candidates.items():
        if ref[0] <= length <= ref[-1]:  # outside the reference's range a candidate matches nothing
            by_bin.setdefault(bisect_right(edges, float(length)), []).append(item)
    unmatched = float(sum(s for b, s in enumerate(share) if s > 0 and not by_bin.get(b)))
    if unmatched >= 1.0 - 1e-12:
        raise ValueError("length matching: no candidate falls into any bin of the reference distribution")
    share = np.array([0.0 if not by_bin.get(b) else s / (1.0 - unmatched) for b, s in enumerate(share)])
    m = min(len(by_bin[b]) / s for b, s in enumerate(share) if s > 0)
    keep: list[str] = []
    for b, s in enumerate(share):
        take = int(round(s * m))
        keep += sorted(by_bin.get(b, []), key=lambda i: _key(seed, i))[:take]
    kept = [candidates[i] for i in keep]
    report = {
        "rule": f"quantile matching over {bins} bins of the reference lengths, seeded sample per bin (seed {seed})",
        "reference": describe(list(reference)),
        "candidates": describe(list(candidates.values())),
        "kept_lengths": describe(kept),
        "candidates_total": len(candidates),
        "kept": len(keep),
        "unmatched_reference_share": round(unmatched, 4),
        "ks_candidates": round(ks_statistic(list(candidates.values()), reference), 4),
        "ks_kept": round(ks_statistic(kept, reference), 4),
    }
    return keep, report
