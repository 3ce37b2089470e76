"""The statistics behind verdicts: simulated coverage and power, DeLong against a bootstrap, Friedman/Nemenyi by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ahl_plugins.errors import DataError
from ahl_plugins.evaluation.delong import delong_test, placements
from ahl_plugins.evaluation.ranks import average_ranks, critical_difference, friedman_nemenyi
from ahl_plugins.evaluation.significance import (
    HELPS,
    HURTS,
    NO_EFFECT,
    clustered_interval,
    mde,
    paired_gain,
    paired_interval,
    pairs_needed,
    wilcoxon_test,
)

DRAWS = 4000
#: Binomial standard error of a rate near 0.95 over DRAWS draws is sqrt(.95 * .05 / 4000) = 0.0034; 4 SE
#: (0.014) leaves a correct interval a false-failure chance below 1e-4 and still fails one at 90% or 99%.
TOLERANCE = 4 * math.sqrt(0.95 * 0.05 / DRAWS)


@pytest.mark.parametrize("effect", [0.0, 0.02])
def test_paired_interval_covers_the_true_gain_95_percent_of_the_time(effect):
    rng = np.random.default_rng(1 if effect else 0)
    n, sd = 5, 0.03
    draws = rng.normal(effect, sd, size=(DRAWS, n))
    results = [paired_interval(row) for row in draws]
    covered = np.mean([r["ci_low"] <= effect <= r["ci_high"] for r in results])
    assert covered == pytest.approx(0.95, abs=TOLERANCE)
    verdicts = [r["verdict"] for r in results]
    if effect == 0:
        # no effect reads "no detectable effect" at the nominal 95%, split evenly between false helps and hurts
        assert verdicts.count(NO_EFFECT) / DRAWS == pytest.approx(0.95, abs=TOLERANCE)
        assert abs(verdicts.count(HELPS) - verdicts.count(HURTS)) / DRAWS < TOLERANCE
    else:
        assert verdicts.count(HELPS) > verdicts.count(HURTS)


def test_mde_is_the_effect_detected_with_80_percent_power():
    """At a true gain equal to the MDE (from the true std), the test says `helps` in 80% of simulated experiments."""
    rng = np.random.default_rng(2)
    n, sd = 6, 0.04
    effect = mde(sd, n)
    normal_shortcut = (1.959964 + 0.841621) * sd / math.sqrt(n)
    assert effect > normal_shortcut  # the t test at 6 pairs needs more than the normal approximation promises
    draws = rng.normal(effect, sd, size=(DRAWS, n))
    helps = np.mean([paired_interval(row)["verdict"] == HELPS for row in draws])
    assert helps == pytest.approx(0.80, abs=4 * math.sqrt(0.8 * 0.2 / DRAWS))


def test_pairs_needed_is_the_first_n_whose_mde_reaches_a_hundredth():
    for sd in (0.01, 0.035, 0.05):
        n = pairs_needed(sd)
        assert mde(sd, n) <= 0.01 < mde(sd, n - 1) if n > 2 else mde(sd, n) <= 0.01
    # large samples approach the normal formula ((z_.975 + z_.8) sd / 0.01)^2
    assert pairs_needed(0.05) == pytest.approx(((1.959964 + 0.841621) * 5) ** 2, rel=0.03)


def test_paired_gain_fields_and_small_samples():
    gain = paired_gain([0.04, 0.05, 0.06])
    assert gain["verdict"] == HELPS and gain["ci_low"] > 0
    assert gain["mde"] is not None and gain["seeds_needed"] >= 2
    assert paired_gain([-0.04, -0.05, -0.06])["verdict"] == HURTS
    one = paired_gain([0.3])
    assert one["verdict"] == NO_EFFECT and one["ci_low"] is None and one["mde"] is None
    assert paired_gain([])["n"] == 0


def test_clustered_interval_counts_splits_not_replicates():
    # two splits, each replicated many times: the replicates must not shrink the interval to nothing
    values = {0: [0.10] * 50, 1: [-0.02] * 50, 2: [0.05] * 50}
    result = clustered_interval(values)
    assert result["clusters"] == 3 and result["n"] == 150
    assert result["mean"] == pytest.approx(0.0433333)
    assert result["training_std"] == pytest.approx(0.0)
    assert result["split_std"] == pytest.approx(np.std([0.10, -0.02, 0.05], ddof=1))
    # with identical replicates the CR1 SE is the SE of the three split means (G/(G-1) times the ddof=0 one)
    means = np.array([0.10, -0.02, 0.05])
    assert result["se"] == pytest.approx(means.std(ddof=1) / math.sqrt(3))
    assert result["verdict"] == NO_EFFECT


def test_wilcoxon_over_datasets():
    assert wilcoxon_test([0.0, 0.0, 0.0])["p"] == 1.0
    from scipy.stats import wilcoxon

    gains = [0.01, 0.03, -0.005, 0.02, 0.04, 0.015, 0.025]
    assert wilcoxon_test(gains)["p"] == pytest.approx(wilcoxon(gains).pvalue)
    assert wilcoxon_test(gains)["p"] < 0.05


# -- DeLong ---------------------------------------------------------------------------------


def _fixed_scores():
    rng = np.random.default_rng(7)
    labels = np.r_[np.zeros(150, int), np.ones(50, int)]
    shared = rng.normal(size=200) + 1.0 * labels  # what both models see: their errors correlate
    a = shared + rng.normal(scale=0.6, size=200) + 0.3 * labels
    b = shared + rng.normal(scale=0.6, size=200)
    return labels, a, b


def test_delong_auc_and_placements_match_the_mann_whitney_count():
    labels, a, _ = _fixed_scores()
    auc, v10, v01 = placements(labels, a)
    pos, neg = a[labels == 1], a[labels == 0]
    pairs = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    assert auc == pytest.approx(pairs.mean())
    np.testing.assert_allclose(v10, pairs.mean(axis=1))
    np.testing.assert_allclose(v01, pairs.mean(axis=0))  # anomalies above each normal
    assert v01.mean() == pytest.approx(auc)


def test_delong_standard_error_matches_a_paired_bootstrap():
    """Resample anomalies and normals (stratified, both models together): the difference's bootstrap std is DeLong's SE."""
    labels, a, b = _fixed_scores()
    result = delong_test(labels, a, b)
    rng = np.random.default_rng(11)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    diffs = []
    for _ in range(800):
        idx = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        diffs.append(placements(labels[idx], a[idx])[0] - placements(labels[idx], b[idx])[0])
    boot_se = float(np.std(diffs, ddof=1))
    # 800 resamples give the bootstrap std to about 1/sqrt(2 * 800) = 2.5%; 12% allows 4-5 of those
    assert result["se"] == pytest.approx(boot_se, rel=0.12)
    assert result["diff"] == pytest.approx(np.mean(diffs), abs=result["se"] / 4)

    # ignoring the correlation (two independent AUCs) would give a clearly larger SE
    def var(scores):
        _, v10, v01 = placements(labels, scores)
        return v10.var(ddof=1) / v10.size + v01.var(ddof=1) / v01.size

    assert math.sqrt(var(a) + var(b)) > 1.3 * result["se"]
    assert delong_test(labels, a, a.copy())["se"] == 0.0  # one model against itself: no difference, no spread
    assert result["ci_low"] < result["diff"] < result["ci_high"]


def test_delong_calls_a_null_difference_no_detectable_effect_at_about_95_percent():
    rng = np.random.default_rng(5)
    labels = np.r_[np.zeros(60, int), np.ones(20, int)]
    verdicts = []
    for _ in range(600):
        shared = rng.normal(size=80) + labels
        verdicts.append(delong_test(labels, shared + rng.normal(size=80), shared + rng.normal(size=80))["verdict"])
    # 600 draws: binomial SE 0.009; DeLong is asymptotic, so 4 SE plus a little
    assert verdicts.count(NO_EFFECT) / 600 == pytest.approx(0.95, abs=0.04)


# -- Friedman / Nemenyi ---------------------------------------------------------------------


def test_friedman_and_nemenyi_on_a_small_table_by_hand():
    names = ["a", "b", "c", "d"]
    table = np.array(
        [
            [0.90, 0.80, 0.70, 0.60],
            [0.85, 0.86, 0.70, 0.60],
            [0.90, 0.80, 0.81, 0.60],
            [0.95, 0.80, 0.70, 0.70],  # c and d tie: both rank 3.5
            [0.90, 0.70, 0.80, 0.60],
        ]
    )
    result = friedman_nemenyi(names, table)
    ranks = np.array([[1, 2, 3, 4], [2, 1, 3, 4], [1, 3, 2, 4], [1, 2, 3.5, 3.5], [1, 3, 2, 4]])
    expected_ranks = ranks.mean(axis=0)
    np.testing.assert_allclose(list(result["average_ranks"].values()), expected_ranks)
    np.testing.assert_allclose(average_ranks(table), expected_ranks)
    n, k = table.shape
    # Friedman's chi-square with the tie correction scipy applies: 12N/(k(k+1)) (sum R^2 - k(k+1)^2/4) / C
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(expected_ranks**2) - k * (k + 1) ** 2 / 4)
    correction = 1 - (2**3 - 2) / (n * (k**3 - k))
    assert result["friedman"]["statistic"] == pytest.approx(chi2 / correction)
    # Demšar's q_0.05 for 4 methods is 2.569; his 14-data-set example has CD 1.25
    assert critical_difference(4, 14) == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 14)), rel=1e-3)
    assert critical_difference(4, 14) == pytest.approx(1.25, abs=0.01)
    assert result["critical_difference"] == pytest.approx(2.569 * math.sqrt(20 / 30), rel=1e-3)
    # a (1.2) and d (3.9) differ by more than CD = 2.10; a, b, c and b, c, d are not told apart
    assert result["cliques"] == [["a", "b", "c"], ["b", "c", "d"]]


def test_friedman_needs_three_methods():
    with pytest.raises(DataError, match="needs >= 3 methods"):
        friedman_nemenyi(["a", "b"], np.ones((4, 2)))
    assert friedman_nemenyi(["a", "b", "c"], np.ones((3, 3)))["friedman"]["p"] == 1.0


def test_delong_refuses_a_test_set_it_cannot_score():
    with pytest.raises(DataError, match="both anomalies and normals"):
        delong_test(np.zeros(5), np.arange(5.0), np.arange(5.0))
    with pytest.raises(DataError, match="one score per test label"):
        delong_test(np.array([0, 1, 0, 1]), np.arange(4.0), np.arange(3.0))
