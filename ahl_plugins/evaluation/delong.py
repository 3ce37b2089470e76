"""DeLong's test for two correlated AUCs: two models scored on the same test set.

With one split a user has one pair of AUCs and no spread over seeds, yet the
two AUCs are not exact: they are estimates from a finite test set, and
because both models scored the *same* samples their errors are correlated.
DeLong, DeLong & Clarke-Pearson (1988) give the covariance of the two AUCs
from each sample's placement value (the fraction of the other class it
outranks); the difference's standard error follows, and with it a normal
interval and a two-sided p-value. Placements are computed from mid-ranks
(Sun & Xu, 2014), so ties count one half and the cost is O(N log N).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from ahl_plugins.errors import DataError
from ahl_plugins.evaluation.significance import LEVEL, verdict


def placements(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(AUC, placement of each anomaly among normals, placement of each normal among anomalies).

    An anomaly's placement is the fraction of normals it scores above (ties ½),
    a normal's is the fraction of anomalies scoring above it; the AUC is the
    mean of either.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise DataError(
            f"DeLong needs one score per test label; got labels of shape {labels.shape} and scores of "
            f"shape {scores.shape}: score the same test samples with both models"
        )
    pos, neg = scores[labels], scores[~labels]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        raise DataError("DeLong needs both anomalies and normals in the test set; an AUC is undefined with one class")
    combined = stats.rankdata(np.concatenate([pos, neg]))
    v10 = (combined[:m] - stats.rankdata(pos)) / n
    v01 = 1.0 - (combined[m:] - stats.rankdata(neg)) / m
    return float(v10.mean()), v10, v01


def delong_test(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, level: float = LEVEL) -> dict[str, Any]:
    """AUC(a) − AUC(b) on one test set: difference, SE, interval, two-sided p and verdict."""
    auc_a, v10_a, v01_a = placements(labels, scores_a)
    auc_b, v10_b, v01_b = placements(labels, scores_b)
    m, n = v10_a.size, v01_a.size
    s10 = np.cov(np.vstack([v10_a, v10_b])) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack([v01_a, v01_b])) if n > 1 else np.zeros((2, 2))
    cov = s10 / m + s01 / n
    diff = auc_a - auc_b
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    z = float(stats.norm.ppf(0.5 + level / 2))
    if se > 0:
        p = float(2 * stats.norm.sf(abs(diff) / se))
        low, high = diff - z * se, diff + z * se
    else:  # identical rankings (or a one-sample class): no uncertainty the test can measure
        p = 1.0 if diff == 0 else 0.0
        low = high = diff
    return {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "diff": diff,
        "se": se,
        "ci_low": low,
        "ci_high": high,
        "p": p,
        "verdict": verdict(low, high) if se > 0 or diff != 0 else verdict(None, None),
    }
