"""Many detectors over many data sets: average ranks, the Friedman test and Nemenyi's critical difference.

Following Demšar (JMLR 2006): rank the methods on every data set (1 = best,
ties share the mean rank), average the ranks, test with Friedman whether the
ranks differ at all, then call two methods different when their average
ranks differ by more than the critical difference
``CD = q_α · sqrt(k(k+1) / 6N)``, where ``q_α`` is the studentized range
quantile for k groups and infinite degrees of freedom divided by √2.
Written here rather than taken from scikit-posthocs or autorank: it is a
dozen lines on ``scipy.stats`` and keeps the dependencies as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from ahl_plugins.errors import DataError


def average_ranks(table: np.ndarray) -> np.ndarray:
    """Mean rank of each column over rows of ``table`` (rows = data sets, higher value = better)."""
    table = np.asarray(table, dtype=np.float64)
    ranks = np.vstack([stats.rankdata(-row) for row in table])
    return ranks.mean(axis=0)


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical difference of average ranks for ``k`` methods on ``n`` data sets."""
    q = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q * math.sqrt(k * (k + 1) / (6.0 * n))


def cliques(names: Sequence[str], ranks: Sequence[float], cd: float) -> list[list[str]]:
    """Maximal runs of methods (sorted by rank) whose ranks all lie within ``cd``: not told apart."""
    order = sorted(range(len(names)), key=lambda i: ranks[i])
    spans: list[tuple[int, int]] = []  # (first, last) positions in ``order``
    for start in range(len(order)):
        end = start
        while end + 1 < len(order) and ranks[order[end + 1]] - ranks[order[start]] < cd:
            end += 1
        if end > start and not (spans and spans[-1][1] >= end):
            spans.append((start, end))
    return [[names[order[i]] for i in range(first, last + 1)] for first, last in spans]


def friedman_nemenyi(names: Sequence[str], table: np.ndarray, alpha: float = 0.05) -> dict[str, Any]:
    """Average ranks, the Friedman test and the Nemenyi CD for ``table`` (rows = data sets, columns = ``names``).

    Needs at least 3 methods (Friedman's) and 2 data sets.
    """
    table = np.asarray(table, dtype=np.float64)
    n, k = table.shape
    if k < 3 or n < 2:
        raise DataError(
            f"the Friedman test needs >= 3 methods and >= 2 data sets, got {k} and {n}; "
            "compare more methods or add data sets"
        )
    ranks = average_ranks(table)
    if np.all(table == table[:, :1]):  # every method equal on every data set: nothing to test
        statistic, p = 0.0, 1.0
    else:
        result = stats.friedmanchisquare(*table.T)
        statistic, p = float(result.statistic), float(result.pvalue)
    cd = critical_difference(k, n, alpha)
    return {
        "methods": list(names),
        "average_ranks": {name: float(r) for name, r in zip(names, ranks, strict=True)},
        "n_datasets": n,
        "friedman": {"statistic": statistic, "p": p},
        "alpha": alpha,
        "critical_difference": cd,
        "cliques": cliques(list(names), list(ranks), cd),
    }
