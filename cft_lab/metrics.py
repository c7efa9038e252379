"""Accuracy with a 95% confidence interval.

The Wilson score interval is used for a single accuracy: unlike the normal approximation it stays inside [0, 1] and
behaves at 0/30 or 30/30, which matters for AIME24-sized benchmarks (one problem = 3.3 points).
"""

from __future__ import annotations

import math

Z95 = 1.959963984540054


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
    return {"correct": correct, "n": n, "accuracy": 100.0 * correct / n if n else float("nan"),
            "ci_low": 100.0 * lo, "ci_high": 100.0 * hi}
