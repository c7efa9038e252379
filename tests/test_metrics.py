"""Metrics and statistics of the evaluation stage, checked against values computed by hand (arithmetic in comments)."""

from __future__ import annotations

import math
import time
from fractions import Fraction

import numpy as np
import pytest

from cft_lab.eval import metrics
from cft_lab.eval.metrics import (
    average_columns,
    avg_at_k,
    bootstrap_ci,
    critique_scores,
    maj_at_k,
    mcnemar_exact_p,
    mean_pass_at_k,
    paired_test,
    pass_at_k,
    score,
    score_items,
    wilson,
)

T, F = True, False


# ---------------------------------------------------------------------------------------------------------------
# wilson / score: unchanged behaviour (used by stages.py and tables.py)
# ---------------------------------------------------------------------------------------------------------------


def test_score_keeps_its_keys_and_values():
    s = score(50, 100)
    assert set(s) == {"correct", "n", "accuracy", "ci_low", "ci_high"}
    # Wilson 50/100, z = 1.96: centre 0.5, half = 1.96*sqrt(0.0025 + 3.8415/40000)/(1 + 0.038415) = 0.09617
    assert s["accuracy"] == 50.0
    assert s["ci_low"] == pytest.approx(40.38, abs=0.01) and s["ci_high"] == pytest.approx(59.62, abs=0.01)
    empty = score(0, 0)
    assert math.isnan(empty["accuracy"]) and (empty["ci_low"], empty["ci_high"]) == (0.0, 100.0)
    assert wilson(0, 30)[0] == 0.0 and wilson(30, 30)[1] == 1.0


# ---------------------------------------------------------------------------------------------------------------
# pass@k, maj@k, avg@k
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 1, 0.3),  # pass@1 = c/n = 3/10
        (10, 3, 5, 11 / 12),  # 1 - C(7,5)/C(10,5) = 1 - 21/252 = 1 - 1/12
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (200, 1, 100, 0.5),  # 1 - C(199,100)/C(200,100) = 1 - (200-100)/200; C(200,100) ~ 9e58
        (5, 0, 2, 0.0),  # c = 0: no subset can pass
        (5, 5, 2, 1.0),  # c = n: every subset passes
        (5, 1, 5, 1.0),  # k = n, c >= 1: the only subset is all samples
        (5, 0, 5, 0.0),  # k = n, c = 0
        (5, 4, 2, 1.0),  # n - c = 1 < k: every 2-subset holds a correct sample
    ],
)
def test_pass_at_k_hand_values(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_exact_binomial_ratio():
    # An independent formula: exact rational 1 - C(n-c,k)/C(n,k) (math.comb(m, k) = 0 when m < k).
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
                assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12), (n, c, k)


@pytest.mark.parametrize("n, c, k", [(3, 1, 4), (3, 1, 0), (3, 4, 1), (3, -1, 1), (0, 0, 1)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_pass_at_k():
    # (0.7 + 0 + 1) / 3, items as in the table above
    assert mean_pass_at_k([[T, F, T, F, F], [F] * 5, [T] * 5], 2) == pytest.approx(1.7 / 3)
    # ragged n: item 1 n=2,c=1,k=2 -> 1; item 2 n=4,c=1,k=2 -> 1 - 3/6 = 0.5; mean 0.75
    assert mean_pass_at_k([[T, F], [F, T, F, F]], 2) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="fewer than k"):
        mean_pass_at_k([[T, F, F], [T]], 2)
    with pytest.raises(ValueError, match="no items"):
        mean_pass_at_k([], 1)


def test_maj_at_k_tie_goes_to_first_occurrence():
    answers, grades = [["3", "4", "4", "3"]], [[F, T, T, F]]
    assert maj_at_k(answers, grades, 4) == 0.0  # "3": 2 votes, "4": 2 votes; "3" occurs first -> wrong
    assert maj_at_k(answers, grades, 3) == 1.0  # first 3: "4" 2 votes vs "3" 1 -> right
    assert maj_at_k(answers, grades, 1) == 0.0  # first sample only: "3" -> wrong
    # same votes, other order: "4" first -> right
    assert maj_at_k([["4", "3", "3", "4"]], [[T, F, F, T]], 4) == 1.0


def test_maj_at_k_several_items_and_missing_answers():
    answers = [
        ["1", "2", "2"],  # "2" wins 2-1, graded right
        ["5", None, None],  # None casts no vote: "5" wins 1-0, right
        [None, None, None],  # no vote at all: wrong
        ["7", "8", "9"],
    ]  # 1-1-1 tie: "7" (first) wins, graded wrong
    grades = [[F, T, T], [T, F, F], [F, F, F], [F, T, T]]
    assert maj_at_k(answers, grades, 3) == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="items"):
        maj_at_k(answers, grades[:3], 3)
    with pytest.raises(ValueError, match="grades"):
        maj_at_k([["1", "2"]], [[T, F, F]], 2)
    with pytest.raises(ValueError, match="fewer than k"):
        maj_at_k(answers, grades, 4)


def test_avg_at_k():
    grades = [[T, F, T, T], [F, F, T, F]]
    assert avg_at_k(grades, 1) == pytest.approx(0.5)  # (1 + 0) / 2
    assert avg_at_k(grades, 2) == pytest.approx(0.25)  # (1/2 + 0/2) / 2
    assert avg_at_k(grades, 4) == pytest.approx(0.5)  # (3/4 + 1/4) / 2
    with pytest.raises(ValueError):
        avg_at_k(grades, 5)


# ---------------------------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------------------------


def test_bootstrap_is_seeded_and_contains_the_mean():
    rng = np.random.default_rng(7)
    x = rng.random(300) < 0.3
    a, b = bootstrap_ci(x, seed=3), bootstrap_ci(list(x), seed=3)
    assert a == b  # same data and seed -> same interval
    assert a[0] < x.mean() < a[1]
    # 0/1 data put the quantiles on a 1/300 grid, where two seeds usually agree; continuous scores show the seed
    y = rng.random(300)
    c = bootstrap_ci(y, seed=3)
    assert c == bootstrap_ci(y, seed=3) and c != bootstrap_ci(y, seed=4)
    assert c[0] < y.mean() < c[1]


# Tolerance for the width at p = 0.5, n = 400: the normal-approximation 95% CI is 0.5 ± 1.96 * sqrt(0.25/400)
# = 0.5 ± 1.96 * 0.025 = 0.5 ± 0.049, width 0.098. The bootstrap differs from it by (i) discreteness: resampled
# means lie on a grid of 1/400 = 0.0025, so each quantile can sit up to ~0.0025 off; (ii) Monte Carlo error of a
# 2.5% quantile from B = 10000 resamples: sqrt(0.025 * 0.975 / 10000) / density, density at the quantile
# = phi(1.96) / 0.025 = 0.0584 / 0.025 = 2.34, so 0.00156 / 2.34 = 0.0007 per end. Both ends together:
# 2 * (0.0025 + 3 * 0.0007) ~ 0.009 -> accept |width - 0.098| < 0.01.
@pytest.mark.parametrize("path", ["counts", "indices"])
def test_bootstrap_width_matches_normal_approximation(path, monkeypatch):
    if path == "indices":
        monkeypatch.setattr(metrics, "_MAX_DISTINCT_FOR_COUNTS", 0)  # force the index-resampling code path
    x = [T] * 200 + [F] * 200
    lo, hi = bootstrap_ci(x, seed=0)
    assert abs((hi - lo) - 0.098) < 0.01
    assert abs((lo + hi) / 2 - 0.5) < 0.005  # symmetric about p = 0.5 (each end within 0.0025 + MC error)
    # alpha = 0.3173 is a ±1 SE interval: 0.5 ± 0.025, width 0.05 (same tolerance reasoning, ~0.008)
    lo1, hi1 = bootstrap_ci(x, seed=0, alpha=0.3173)
    assert abs((hi1 - lo1) - 0.05) < 0.008


def test_bootstrap_partial_last_batch_is_filled(monkeypatch):
    # Batches of 1000 elements with n = 400 -> 2 resamples per batch; n_boot = 1001 leaves a last batch of 1.
    monkeypatch.setattr(metrics, "_MAX_BATCH_ELEMENTS", 1000)
    monkeypatch.setattr(metrics, "_MAX_DISTINCT_FOR_COUNTS", 0)
    means = metrics._resampled_means(np.array([1.0] * 200 + [0.0] * 200), 1001, np.random.default_rng(0))
    assert means.shape == (1001,)
    assert ((means >= 0.4) & (means <= 0.6)).all()  # 0.5 ± 4 SE; uninitialised memory would not fit
    assert abs(means.mean() - 0.5) < 0.003  # SE of the mean of 1001 means: 0.025 / sqrt(1001) = 0.0008


def test_bootstrap_handles_fractional_scores_and_degenerate_data():
    # per-item avg@4 fractions: values 0, 0.25, ..., 1 -> a CI around their mean
    # mean 0.5, population sd sqrt(0.125) = 0.3536, SE 0.3536 / sqrt(200) = 0.025
    x = [0.0, 0.25, 0.5, 0.75, 1.0] * 40
    lo, hi = bootstrap_ci(x)
    assert abs((hi - lo) - 0.098) < 0.01  # 2 * 1.96 * 0.025 = 0.098, tolerance as above
    assert bootstrap_ci([F] * 30) == (0.0, 0.0)  # every resample of 0/30 is 0/30
    assert bootstrap_ci([T] * 30) == (1.0, 1.0)
    assert bootstrap_ci([0.4]) == pytest.approx((0.4, 0.4))


@pytest.mark.parametrize(
    "bad, kwargs",
    [([], {}), ([0.5, float("nan")], {}), ([T, F], {"alpha": 0.0}), ([T, F], {"alpha": 1.0}), ([T, F], {"n_boot": 0})],
)
def test_bootstrap_rejects_bad_input(bad, kwargs):
    with pytest.raises(ValueError):
        bootstrap_ci(bad, **kwargs)


def test_bootstrap_10000_resamples_of_5000_items_is_fast():
    x = np.random.default_rng(0).random(5000) < 0.5
    t0 = time.perf_counter()
    bootstrap_ci(x, n_boot=10000)
    assert time.perf_counter() - t0 < 0.5  # measured ~0.002 s (multinomial counts)
    y = np.random.default_rng(0).random(5000)  # 5000 distinct values -> batched index resampling
    t0 = time.perf_counter()
    bootstrap_ci(y, n_boot=10000)
    assert time.perf_counter() - t0 < 3.0  # measured ~0.35 s on 1 thread; generous for a shared 2-core box


def test_score_items_adds_bootstrap_to_wilson():
    s = score_items([T, T, T, F])
    assert set(s) == {"correct", "n", "accuracy", "ci_low", "ci_high", "boot_low", "boot_high"}
    assert (s["correct"], s["n"], s["accuracy"]) == (3, 4, 75.0)
    # Wilson 3/4: denom 1 + 3.8415/4 = 1.9604; centre (0.75 + 0.4802)/1.9604 = 0.6275;
    # half 1.96 * sqrt(0.1875/4 + 3.8415/64) / 1.9604 = 1.96 * 0.32695 / 1.9604 = 0.3269 -> [30.06, 95.44]
    assert s["ci_low"] == pytest.approx(30.06, abs=0.01) and s["ci_high"] == pytest.approx(95.44, abs=0.01)
    # Bootstrap mean of 4 resampled items ~ Bin(4, 0.75)/4: P(0) = 1/256 = 0.004, P(<= 1/4) = 13/256 = 0.051,
    # P(1) = 81/256 = 0.316. So the 2.5% quantile is 1/4 and the 97.5% quantile is 4/4.
    assert (s["boot_low"], s["boot_high"]) == (25.0, 100.0)
    empty = score_items([])
    assert empty["n"] == 0 and math.isnan(empty["boot_low"]) and math.isnan(empty["boot_high"])
    with pytest.raises(TypeError):
        score_items([0.5, 1.0])


# ---------------------------------------------------------------------------------------------------------------
# Paired comparison
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "b01, b10, expected",
    [
        (1, 6, 0.125),  # 2 * (C(7,0) + C(7,1)) / 2^7 = 2 * 8 / 128
        (6, 1, 0.125),  # symmetric
        (0, 5, 0.0625),  # 2 * C(5,0) / 2^5 = 2/32
        (2, 10, 158 / 4096),  # 2 * (1 + 12 + 66) / 2^12 = 158/4096 = 0.0385742...
        (3, 3, 1.0),  # 2 * (1 + 6 + 15 + 20) / 64 = 84/64 > 1 -> capped at 1
        (0, 0, 1.0),  # no discordant pairs: no evidence
        (0, 1, 1.0),  # 2 * 1/2 = 1
    ],
)
def test_mcnemar_exact_p_hand_values(b01, b10, expected):
    assert mcnemar_exact_p(b01, b10) == pytest.approx(expected, rel=1e-12)


def test_mcnemar_large_counts_do_not_overflow():
    # 0 vs 2000 discordant: 2 / 2^2000 underflows to 0.0 without raising
    assert mcnemar_exact_p(0, 2000) == 0.0
    # 500 vs 500: P(X <= 500) for Bin(1000, 1/2) = 1/2 + P(X = 500)/2 -> p = 1 + P(X=500) > 1 -> 1
    assert mcnemar_exact_p(500, 500) == 1.0


def _runs(n_fixed: int, n_broken: int, n_both: int, n_neither: int):
    """a = baseline, b = new run: b fixes n_fixed items (b01) and breaks n_broken (b10)."""
    a = [F] * n_fixed + [T] * n_broken + [T] * n_both + [F] * n_neither
    b = [T] * n_fixed + [F] * n_broken + [T] * n_both + [F] * n_neither
    return a, b


def test_paired_test_counts_p_and_diff():
    a, b = _runs(6, 1, 10, 3)  # n = 20
    r = paired_test(a, b)
    assert (r["n"], r["b01"], r["b10"]) == (20, 6, 1)
    assert r["accuracy_a"] == pytest.approx(100 * 11 / 20)  # 1 + 10 right = 55
    assert r["accuracy_b"] == pytest.approx(100 * 16 / 20)  # 6 + 10 right = 80
    assert r["diff"] == pytest.approx(25.0)  # (6 - 1) / 20 = 25 points
    assert r["p_value"] == pytest.approx(0.125)  # 2 * (1 + 7) / 128, as above


def test_paired_ci_sign_and_width():
    a, b = _runs(30, 2, 40, 28)  # n = 100, diff = (30 - 2)/100 = +28 points
    r = paired_test(a, b)
    assert r["diff"] == pytest.approx(28.0)
    assert 0 < r["diff_low"] < r["diff"] < r["diff_high"]
    # Per-item d in {+1: 30, -1: 2, 0: 68}: E[d^2] = 0.32, var = 0.32 - 0.28^2 = 0.2416, SE = sqrt(0.2416/100)
    # = 0.0492 -> 95% CI ~ 28 ± 1.96 * 4.92 = 28 ± 9.6 points = [18.4, 37.6]. Tolerance 1.5 points: resampled
    # differences lie on a 1-point grid (1/100), Monte Carlo error ~0.15 points, small skew of the percentile CI.
    assert r["diff_low"] == pytest.approx(18.4, abs=1.5) and r["diff_high"] == pytest.approx(37.6, abs=1.5)
    # The paired CI is far tighter than an unpaired one: independent SEs sqrt(.42*.58/100 + .7*.3/100) = 0.0659
    # would give ± 12.9 points.
    assert r["diff_high"] - r["diff_low"] < 2 * 11.0
    swapped = paired_test(b, a)
    assert (swapped["b01"], swapped["b10"]) == (2, 30)
    assert swapped["diff"] == pytest.approx(-28.0)
    assert swapped["diff_low"] < swapped["diff_high"] < 0
    assert swapped["p_value"] == r["p_value"]


def test_paired_test_identical_runs():
    a = [T, F, T, T, F]
    r = paired_test(a, list(a))
    assert (r["b01"], r["b10"], r["diff"], r["p_value"]) == (0, 0, 0.0, 1.0)
    assert (r["diff_low"], r["diff_high"]) == (0.0, 0.0)


def test_paired_test_rejects_mismatched_or_empty_runs():
    with pytest.raises(ValueError, match=r"len\(a\)=3 != len\(b\)=2"):
        paired_test([T, F, T], [T, F])
    with pytest.raises(ValueError):
        paired_test([], [])


# ---------------------------------------------------------------------------------------------------------------
# Averages
# ---------------------------------------------------------------------------------------------------------------


def test_average_columns_is_the_plain_mean():
    # (80.2 + 39.4 + 40.1 + 16.7 + 57.5 + 38.0) / 6 = 271.9 / 6 = 45.31666...
    assert average_columns([80.2, 39.4, 40.1, 16.7, 57.5, 38.0]) == pytest.approx(271.9 / 6, abs=1e-12)
    assert average_columns([1, 2, 4]) == pytest.approx(7 / 3)


def test_delta_comes_from_unrounded_averages():
    sft = average_columns([10.0, 10.08])  # 10.04 -> shown as 10.0
    cft = average_columns([10.1, 10.22])  # 10.16 -> shown as 10.2
    assert round(cft - sft, 1) == 0.1  # 10.16 - 10.04 = 0.12 -> 0.1
    assert round(round(cft, 1) - round(sft, 1), 1) == 0.2  # rounding first would report 0.2


@pytest.mark.parametrize("bad", [[], [50.0, None], [50.0, float("nan")], [50.0, "40"], [50.0, True]])
def test_average_columns_needs_every_column(bad):
    with pytest.raises(ValueError):
        average_columns(bad)


# ---------------------------------------------------------------------------------------------------------------
# Critique ability
# ---------------------------------------------------------------------------------------------------------------


def test_critique_scores_hand_confusion_matrix():
    pred = [T, T, T, F, F, F, T, None, None, T]
    true = [T, T, F, T, F, F, F, T, F, T]
    # item: 0 tp, 1 tp, 2 fp, 3 fn, 4 tn, 5 tn, 6 fp, 7 unparsed, 8 unparsed, 9 tp
    r = critique_scores(pred, true)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (3, 2, 1, 2)
    assert (r["n"], r["parsed"], r["unparsed"]) == (10, 8, 2)
    assert r["unparsed_rate"] == pytest.approx(0.2)  # 2 / 10
    assert r["precision"] == pytest.approx(0.6)  # 3 / (3 + 2)
    assert r["recall"] == pytest.approx(0.75)  # 3 / (3 + 1)
    assert r["f1"] == pytest.approx(2 / 3)  # 2*0.6*0.75/1.35 = 0.9/1.35 = 6/9
    assert r["accuracy"] == pytest.approx(0.625)  # (3 + 2) / 8 parsed
    assert r["accuracy_strict"] == pytest.approx(0.5)  # (3 + 2) / 10, unparsed counted wrong


def test_critique_precision_undefined_when_nothing_flagged():
    r = critique_scores([F, F, None], [T, F, T])
    # parsed: item 0 fn, item 1 tn
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (0, 0, 1, 1)
    assert r["precision"] is None  # 0 / 0: nothing predicted wrong
    assert r["recall"] == 0.0 and r["f1"] == 0.0  # 0 / 1; 2*0 / (0 + 0 + 1)
    r = critique_scores([F, F], [F, F])
    assert r["precision"] is None and r["recall"] is None and r["f1"] is None and r["accuracy"] == 1.0
    r = critique_scores([None, None], [T, F])
    assert r["accuracy"] is None and r["unparsed_rate"] == 1.0 and r["accuracy_strict"] == 0.0


def test_critique_scores_rejects_bad_input():
    with pytest.raises(ValueError, match="items"):
        critique_scores([T, F], [T])
    with pytest.raises(TypeError):
        critique_scores(["wrong", F], [T, F])
