"""Scores, confidence intervals and paired comparisons for the evaluation stage.

Units. Functions that return a bare number (``pass_at_k``, ``maj_at_k``, ``avg_at_k``, ``bootstrap_ci``) and
``critique_scores`` work in fractions (0..1). The report-facing dicts ``score``, ``score_items`` and
``paired_test`` are in percent / percentage points, like the paper's tables.

What each statistic is, what it assumes, and when to use it
-----------------------------------------------------------
All intervals below describe uncertainty from *which problems* a benchmark happens to contain (the items are
treated as a random sample from a population of similar problems). With greedy decoding that is the only source
of randomness. They say nothing about grader disagreement or about run-to-run nondeterminism of the inference
engine (docs/pitfalls.md#evaluation), which must be recorded separately.

``wilson`` / ``score`` -- Wilson score interval of a single accuracy ``correct / n``. Assumes independent 0/1
  items. Unlike the normal approximation it stays inside [0, 1] and is informative at 0/30 or 30/30, which matters
  for AIME24 (30 problems, one = 3.3 points) and AMC23 (40, one = 2.5 points). This is the headline CI of a
  single accuracy (``ci_low``/``ci_high`` in tables).

``bootstrap_ci`` / ``score_items`` -- percentile bootstrap of the mean of per-item scores. Resamples the n items
  with replacement ``n_boot`` times (seeded, reproducible) and takes the alpha/2 and 1-alpha/2 quantiles of the
  resampled means. Needs no 0/1 assumption, so it also covers per-item fractions (avg@k) and paired differences.
  Caveats: at 0/n or n/n every resample has the same mean and the interval collapses to a point (Wilson does not),
  and for small n (AIME24) the percentile interval under-covers somewhat. For a single 0/1 accuracy prefer
  Wilson; ``score_items`` reports both (``boot_low``/``boot_high`` beside the Wilson ``ci_low``/``ci_high``).
  Implementation: when the data take few distinct values (0/1 grades, avg@k fractions, paired differences in
  {-1, 0, 1}) the number of resampled items carrying each value is drawn directly from the multinomial
  distribution that resampling induces; that is the same distribution of the resampled mean as drawing indices,
  only without the n-by-n_boot index matrix. Otherwise indices are drawn in batches of bounded size.

``paired_test`` -- two runs (e.g. SFT vs CFT) on the SAME items in the same order. Exact McNemar test: only
  discordant items carry information; under H0 (the two runs are equally accurate on these items) each of the
  b01 + b10 discordant items is equally likely to favour either run, so min(b01, b10) ~ Bin(b01 + b10, 1/2) and
  the two-sided p-value is min(1, 2 P(X <= min(b01, b10))). The accuracy difference gets a paired bootstrap CI
  (items resampled jointly), which is much tighter than combining two independent CIs because the runs are
  correlated item by item. Use this, not overlapping per-run CIs, to say whether CFT beat SFT on a benchmark.
  Testing many benchmarks at once calls for a multiple-comparison correction, which is left to the reader.

``average_columns`` -- the paper's "AVG": the plain, unweighted mean of the listed benchmark columns
  (docs/protocol.md §4.1), so AIME24 (30 items) weighs as much as MATH (5000). Not the harness's own "avg". Round only
  at display; a Δ between two rows is the difference of the *unrounded* averages, then rounded.

``pass_at_k`` / ``maj_at_k`` / ``avg_at_k`` -- sampling metrics (docs/protocol.md §4.7 temperature rows): unbiased
  pass@k (Chen et al. 2021) from n >= k samples per item, majority vote over the first k extracted answers, and
  mean accuracy over the first k samples.

``critique_scores`` -- how well a model's critique verdicts ("Conclusion: wrong" = True, "right" = False,
  unparsed = None) detect responses that were actually wrong. Precision/recall/F1 of the "wrong" class and
  accuracy over parsed verdicts, with the unparsed count and rate reported beside them
  (docs/pitfalls.md#data-and-teacher: count what the parser could not parse), plus a strict accuracy that counts
  unparsed verdicts as errors.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import numpy as np

__all__ = [
    "Z95",
    "wilson",
    "score",
    "score_items",
    "bootstrap_ci",
    "paired_test",
    "mcnemar_exact_p",
    "average_columns",
    "pass_at_k",
    "mean_pass_at_k",
    "maj_at_k",
    "avg_at_k",
    "critique_scores",
]

Z95 = 1.959963984540054

# Resampling works on at most this many float64/int64 elements at a time (32 MiB).
_MAX_BATCH_ELEMENTS = 1 << 22
# Data with at most this many distinct values are resampled through multinomial counts (see module docstring).
_MAX_DISTINCT_FOR_COUNTS = 64


# --------------------------------------------------------------------------------------------------------------
# Single accuracy
# --------------------------------------------------------------------------------------------------------------


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``correct / n``, as fractions.

    >>> [round(x, 4) for x in wilson(50, 100)]
    [0.4038, 0.5962]
    >>> wilson(0, 0)
    (0.0, 1.0)
    >>> wilson(0, 6)[0], wilson(6, 6)[1]
    (0.0, 1.0)
    """
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if correct == 0 else max(0.0, centre - half)  # exact bounds at 0/n and n/n (no float dust)
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return lo, hi


def score(correct: int, n: int) -> dict:
    """Accuracy and its 95% CI in percent."""
    lo, hi = wilson(correct, n)
    return {
        "correct": correct,
        "n": n,
        "accuracy": 100.0 * correct / n if n else float("nan"),
        "ci_low": 100.0 * lo,
        "ci_high": 100.0 * hi,
    }


def _flags(values: Sequence, name: str) -> np.ndarray:
    """A 1-D sequence of bools (or 0/1 numbers) as a bool array; anything else is an error."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of booleans, got shape {arr.shape}")
    if arr.size == 0 or arr.dtype == bool:
        return arr.astype(bool)
    if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
        raise TypeError(f"{name} must hold booleans (or 0/1), got dtype {arr.dtype}")
    return arr.astype(bool)


def _resampled_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means of ``x`` resampled with replacement, in batches of bounded memory."""
    n = x.size
    out = np.empty(n_boot)
    values, counts = np.unique(x, return_counts=True)
    if values.size <= _MAX_DISTINCT_FOR_COUNTS:
        # How many of the n drawn items carry each distinct value: Multinomial(n, counts / n). Same distribution
        # of the resampled mean as drawing indices.
        probs = counts / n
        step = max(1, _MAX_BATCH_ELEMENTS // values.size)
        for start in range(0, n_boot, step):
            stop = min(n_boot, start + step)
            out[start:stop] = rng.multinomial(n, probs, size=stop - start) @ values / n
    else:
        step = max(1, _MAX_BATCH_ELEMENTS // n)
        dtype = np.int32 if n < 2**31 else np.int64
        for start in range(0, n_boot, step):
            stop = min(n_boot, start + step)
            out[start:stop] = x[rng.integers(0, n, size=(stop - start, n), dtype=dtype)].sum(axis=1) / n
    return out


def bootstrap_ci(
    correct: Sequence[bool | float], *, n_boot: int = 10000, seed: int | None = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) CI of the mean of per-item scores, in the units of the input (fractions).

    Seeded: the same data, ``n_boot`` and ``seed`` give the same interval.

    >>> lo, hi = bootstrap_ci([True] * 60 + [False] * 40)
    >>> lo < 0.6 < hi, round(hi - lo, 1)
    (True, 0.2)
    >>> bootstrap_ci([False] * 30)    # collapses at 0/n: use Wilson for a single 0/1 accuracy
    (0.0, 0.0)
    """
    x = np.asarray(correct, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"correct must be a flat sequence, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one item")
    if not np.isfinite(x).all():
        raise ValueError("correct holds NaN or infinite values")
    n_boot = operator.index(n_boot)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    means = _resampled_means(x, n_boot, np.random.default_rng(seed))
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def score_items(correct: Sequence[bool], *, n_boot: int = 10000, seed: int | None = 0) -> dict:
    """``score`` from per-item grades, plus the percentile-bootstrap 95% CI (``boot_low``/``boot_high``, percent).

    With no items the bootstrap bounds are NaN (``score`` gives accuracy NaN and Wilson (0, 100)).

    >>> s = score_items([True, True, True, False])
    >>> s["correct"], s["n"], s["accuracy"], round(s["ci_low"], 1), round(s["ci_high"], 1)
    (3, 4, 75.0, 30.1, 95.4)
    """
    flags = _flags(correct, "correct")
    out = score(int(flags.sum()), int(flags.size))
    if flags.size:
        lo, hi = bootstrap_ci(flags, n_boot=n_boot, seed=seed)
        out.update(boot_low=100.0 * lo, boot_high=100.0 * hi)
    else:
        out.update(boot_low=float("nan"), boot_high=float("nan"))
    return out


# --------------------------------------------------------------------------------------------------------------
# Paired comparison and averages
# --------------------------------------------------------------------------------------------------------------


def mcnemar_exact_p(b01: int, b10: int) -> float:
    """Exact two-sided McNemar p-value: min(1, 2 P(X <= min(b01, b10))), X ~ Bin(b01 + b10, 1/2).

    Computed with exact integers (``math.comb``; scipy is not a dependency), divided once at the end.

    >>> mcnemar_exact_p(1, 6)         # 2 * (C(7,0) + C(7,1)) / 2**7 = 16/128
    0.125
    >>> mcnemar_exact_p(0, 0)
    1.0
    """
    b01, b10 = operator.index(b01), operator.index(b10)
    if b01 < 0 or b10 < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b01}, {b10}")
    m = b01 + b10
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(b01, b10) + 1))
    return min(1.0, 2 * tail / 2**m)  # int / int: correctly rounded, no overflow


def paired_test(
    a: Sequence[bool], b: Sequence[bool], *, n_boot: int = 10000, seed: int | None = 0, alpha: float = 0.05
) -> dict:
    """Compare two runs graded on the SAME items in the same order (``a`` e.g. SFT, ``b`` e.g. CFT).

    Returns ``n``; ``accuracy_a``, ``accuracy_b`` (percent); ``b01`` = items ``a`` got wrong and ``b`` right,
    ``b10`` = items ``a`` got right and ``b`` wrong; ``p_value`` (exact two-sided McNemar); ``diff`` = accuracy of
    ``b`` minus ``a`` in points, with ``diff_low``/``diff_high`` its paired percentile-bootstrap (1 - alpha) CI
    (items resampled jointly, seeded).

    >>> r = paired_test([0, 0, 0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 0, 0])
    >>> r["b01"], r["b10"], r["diff"], r["p_value"]
    (3, 1, 25.0, 0.625)
    """
    fa, fb = _flags(a, "a"), _flags(b, "b")
    if fa.size != fb.size:
        raise ValueError(f"paired_test needs the same items in both runs: len(a)={fa.size} != len(b)={fb.size}")
    if fa.size == 0:
        raise ValueError("paired_test needs at least one item")
    n = int(fa.size)
    b01 = int((~fa & fb).sum())
    b10 = int((fa & ~fb).sum())
    lo, hi = bootstrap_ci(fb.astype(float) - fa.astype(float), n_boot=n_boot, seed=seed, alpha=alpha)
    return {
        "n": n,
        "accuracy_a": 100.0 * fa.sum() / n,
        "accuracy_b": 100.0 * fb.sum() / n,
        "b01": b01,
        "b10": b10,
        "p_value": mcnemar_exact_p(b01, b10),
        "diff": 100.0 * (b01 - b10) / n,
        "diff_low": 100.0 * lo,
        "diff_high": 100.0 * hi,
    }


def average_columns(scores: Sequence[float]) -> float:
    """The paper's AVG (docs/protocol.md §4.1): the plain mean of the listed columns, unrounded.

    Every column must be present: a missing (None) or NaN cell is an error, since averaging fewer columns gives a
    different AVG. Round only for display, and compute a Δ between rows from the unrounded averages:

    >>> sft, cft = average_columns([10.0, 10.08]), average_columns([10.1, 10.22])
    >>> round(sft, 1), round(cft, 1), round(cft - sft, 1)    # not 10.2 - 10.0 = 0.2
    (10.0, 10.2, 0.1)
    """
    cols = list(scores)
    if not cols:
        raise ValueError("average_columns needs at least one column")
    for i, s in enumerate(cols):
        if (
            s is None
            or isinstance(s, bool)
            or not isinstance(s, (int, float, np.integer, np.floating))
            or not math.isfinite(s)
        ):
            raise ValueError(f"column {i} is {s!r}: every listed column needs a finite score")
    return math.fsum(float(s) for s in cols) / len(cols)


# --------------------------------------------------------------------------------------------------------------
# Sampling metrics (several samples per item)
# --------------------------------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. 2021 from ``n`` samples of which ``c`` are correct: 1 - C(n-c, k) / C(n, k).

    Computed as the product 1 - prod_{i=n-c+1}^{n} (1 - k / i), which never forms the huge binomials.

    >>> pass_at_k(5, 2, 2)            # 1 - C(3,2)/C(5,2) = 1 - 3/10
    0.7
    >>> round(pass_at_k(10, 3, 1), 12)  # pass@1 = c / n
    0.3
    """
    n, c, k = operator.index(n), operator.index(c), operator.index(k)
    if n < 1:
        raise ValueError(f"pass@k needs n >= 1 samples, got n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n} (pass@k needs at least k samples per item)")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def _check_items(samples: Sequence[Sequence], k: int, name: str) -> int:
    k = operator.index(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(samples) == 0:
        raise ValueError(f"{name} has no items")
    for i, item in enumerate(samples):
        if len(item) < k:
            raise ValueError(f"item {i} of {name} has {len(item)} samples, fewer than k={k}")
    return k


def mean_pass_at_k(samples: Sequence[Sequence[bool]], k: int) -> float:
    """Mean over items of ``pass_at_k(len(item), sum(item), k)`` (fraction); every item needs >= k samples.

    >>> round(mean_pass_at_k([[True, False, True, False, False], [False] * 5], 2), 6)   # (0.7 + 0) / 2
    0.35
    """
    k = _check_items(samples, k, "samples")
    return float(np.mean([pass_at_k(len(item), int(_flags(item, "samples").sum()), k) for item in samples]))


def maj_at_k(answers: Sequence[Sequence[str | None]], correct: Sequence[Sequence[bool]], k: int) -> float:
    """maj@k (fraction of items): majority vote over the extracted answers of each item's first ``k`` samples.

    Answers are compared as exact strings (normalise them before calling). ``None`` (no answer extracted) casts no
    vote; an item with no vote counts as wrong. Ties are broken deterministically in favour of the answer that
    occurs first among the k samples. The item is correct when the winning answer's sample is graded correct (the
    grade of its first occurrence; graders that compare the extracted answer with the gold give every sample with
    that answer the same grade).

    >>> maj_at_k([["3", "4", "4", "3"]], [[False, True, True, False]], 4)   # 2-2 tie: "3" occurs first
    0.0
    >>> maj_at_k([["3", "4", "4", "3"]], [[False, True, True, False]], 3)   # "4" wins 2-1
    1.0
    """
    if len(answers) != len(correct):
        raise ValueError(f"answers has {len(answers)} items but correct has {len(correct)}")
    k = _check_items(answers, k, "answers")
    hits = 0
    for i, (ans, ok) in enumerate(zip(answers, correct)):
        if len(ans) != len(ok):
            raise ValueError(f"item {i}: {len(ans)} answers but {len(ok)} grades")
        grades = _flags(list(ok)[:k], "correct")
        counts: dict[str, int] = {}
        first: dict[str, int] = {}
        for j, a in enumerate(list(ans)[:k]):
            if a is None:
                continue
            counts[a] = counts.get(a, 0) + 1
            first.setdefault(a, j)
        if counts:
            winner = max(counts, key=lambda a: (counts[a], -first[a]))
            hits += bool(grades[first[winner]])
    return hits / len(answers)


def avg_at_k(correct: Sequence[Sequence[bool]], k: int) -> float:
    """avg@k (fraction): mean over items of the accuracy of each item's first ``k`` samples.

    >>> avg_at_k([[True, False, True, True], [False, False, True, False]], 2)   # (1/2 + 0/2) / 2
    0.25
    """
    k = _check_items(correct, k, "correct")
    return float(np.mean([_flags(list(item)[:k], "correct").mean() for item in correct]))


# --------------------------------------------------------------------------------------------------------------
# Critique ability
# --------------------------------------------------------------------------------------------------------------


def critique_scores(pred_wrong: Sequence[bool | None], truly_wrong: Sequence[bool]) -> dict:
    """How well parsed critique verdicts detect wrong responses; "wrong" is the positive class.

    ``pred_wrong[i]``: the critique's verdict (True = "wrong", False = "right", None = could not be parsed).
    ``truly_wrong[i]``: whether response i was actually wrong (graded against the gold answer).

    Returns the confusion counts over PARSED verdicts (``tp`` wrong/wrong, ``fp`` said wrong but right, ``fn``
    said right but wrong, ``tn`` right/right) and, as fractions:

    - ``precision`` = tp / (tp + fp): None when no parsed verdict says "wrong" (undefined, not 0);
    - ``recall`` = tp / (tp + fn): None when no parsed item is truly wrong;
    - ``f1`` = 2 tp / (2 tp + fp + fn) (the harmonic mean of the two where both exist; 0 when the model flags
      nothing but misses wrong responses): None only when tp + fp + fn = 0;
    - ``accuracy`` = (tp + tn) / parsed: None when nothing parsed;
    - ``accuracy_strict`` = (tp + tn) / n, unparsed verdicts counted as errors;
    - ``n``, ``parsed``, ``unparsed``, ``unparsed_rate`` = unparsed / n.

    >>> r = critique_scores([True, True, False, None], [True, False, True, True])
    >>> r["tp"], r["fp"], r["fn"], r["tn"], r["precision"], r["recall"], r["unparsed"]
    (1, 1, 1, 0, 0.5, 0.5, 1)
    """
    truth = _flags(truly_wrong, "truly_wrong")
    preds = list(pred_wrong)
    if len(preds) != truth.size:
        raise ValueError(f"pred_wrong has {len(preds)} items but truly_wrong has {truth.size}")
    tp = fp = fn = tn = unparsed = 0
    for i, (p, t) in enumerate(zip(preds, truth)):
        if p is None:
            unparsed += 1
            continue
        if not isinstance(p, (bool, np.bool_)):
            raise TypeError(f"pred_wrong[{i}] is {p!r}: verdicts must be True (wrong), False (right) or None")
        if p and t:
            tp += 1
        elif p:
            fp += 1
        elif t:
            fn += 1
        else:
            tn += 1
    n = len(preds)
    parsed = n - unparsed
    return {
        "n": n,
        "parsed": parsed,
        "unparsed": unparsed,
        "unparsed_rate": unparsed / n if n else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
        "accuracy": (tp + tn) / parsed if parsed else None,
        "accuracy_strict": (tp + tn) / n if n else None,
    }
