"""Is a paired gain real? Intervals, verdicts and power for differences measured on the same splits.

A gain (AHL − base, an ablation − base) is measured once per seed on the same
split, so the seeds' differences are the sample. ``mean ± std`` alone cannot
say whether a row's gain is a lucky seed: at 3 seeds a method with no effect
lands beyond one std below zero 11% of the time. Here every gain gets

- a 95% paired t interval for the mean difference,
- a verdict: ``helps`` when the interval lies above 0, ``hurts`` below, else
  ``no detectable effect`` (which is not "no effect": see the MDE),
- the minimum detectable effect (MDE): the true gain a two-sided 5% paired t
  test at this n would detect with 80% power, given the observed spread
  (exact, from the noncentral t), and
- the number of pairs (seeds) at which the MDE falls to ±0.01 AUC.

Replicates within a split (several training seeds) are not independent pairs:
:func:`clustered_interval` treats each split's replicates as one cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

LEVEL = 0.95
POWER = 0.80
#: The gain a user usually wants to resolve (AUC units): "seeds needed" is for this MDE.
RESOLVE = 0.01
HELPS, HURTS, NO_EFFECT = "helps", "hurts", "no detectable effect"
VERDICTS = (HELPS, HURTS, NO_EFFECT)
#: Beyond this many pairs, "seeds needed" is reported as this bound (the spread is too large to bother).
MAX_PAIRS = 1_000_000


def _clean(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)


def verdict(low: float | None, high: float | None) -> str:
    """``helps`` / ``hurts`` when the interval excludes 0, else ``no detectable effect``."""
    if low is None or high is None:
        return NO_EFFECT
    if low > 0:
        return HELPS
    if high < 0:
        return HURTS
    return NO_EFFECT


def t_interval(mean: float, se: float, df: int, level: float = LEVEL) -> tuple[float, float]:
    """``mean ± t_{(1+level)/2, df} · se``."""
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return mean - half, mean + half


def _power(effect: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t test at true mean ``effect`` (noncentral t, exact)."""
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = effect * math.sqrt(n) / sd
    upper, lower = stats.nct.sf(crit, df, nc), stats.nct.cdf(-crit, df, nc)
    # far in the tail scipy's noncentral t can return nan: there the tail is 0 and the upper side is 1
    upper = 1.0 if math.isnan(upper) else float(upper)
    lower = 0.0 if math.isnan(lower) else float(lower)
    return min(1.0, upper + lower)


def mde(sd: float | None, n: int, power: float = POWER, level: float = LEVEL) -> float | None:
    """The smallest true gain a two-sided paired t test at ``n`` pairs detects with ``power``.

    Solved exactly on the noncentral t (the normal shortcut
    ``(z_α/2 + z_β)·sd/√n`` is too optimistic at few seeds). None below 2 pairs.
    """
    if n < 2 or sd is None or not math.isfinite(sd):
        return None
    if sd == 0:
        return 0.0
    alpha = 1 - level
    df = n - 1
    guess = (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n)
    upper = guess * 2
    while _power(upper, sd, n, alpha) < power:
        upper *= 2
    return float(optimize.brentq(lambda e: _power(e, sd, n, alpha) - power, 0.0, upper, xtol=1e-9 * sd))


def pairs_needed(sd: float | None, target: float = RESOLVE, power: float = POWER, level: float = LEVEL) -> int | None:
    """Fewest pairs at which the MDE is at most ``target`` (bisection: the MDE falls with n)."""
    if sd is None or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    finite_sd = sd

    def mde_at(n: int) -> float:
        value = mde(finite_sd, n, power, level)
        assert value is not None  # sd is finite and every n here is at least 2
        return value

    low, high = 2, 4
    while mde_at(high) > target:
        low, high = high, high * 2
        if high > MAX_PAIRS:
            return MAX_PAIRS
    if mde_at(low) <= target:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        if mde_at(mid) <= target:
            high = mid
        else:
            low = mid
    return high


def paired_interval(values: Sequence[float | None], level: float = LEVEL) -> dict[str, Any]:
    """Mean, std, n, the paired t interval and its verdict for paired differences ``values``."""
    arr = _clean(values)
    n = int(arr.size)
    out: dict[str, Any] = {"mean": None, "std": None, "n": n, "ci_low": None, "ci_high": None, "verdict": NO_EFFECT}
    if n == 0:
        return out
    mean = float(arr.mean())
    sd = float(arr.std(ddof=1)) if n > 1 else 0.0
    out.update(mean=mean, std=sd)
    if n >= 2:
        low, high = t_interval(mean, sd / math.sqrt(n), n - 1, level)
        out.update(ci_low=low, ci_high=high, verdict=verdict(low, high))
    return out


def paired_gain(values: Sequence[float | None], level: float = LEVEL) -> dict[str, Any]:
    """:func:`paired_interval` plus the MDE at this n and the seeds needed to resolve ±0.01."""
    out = paired_interval(values, level)
    out.update(mde=None, seeds_needed=None)
    if out["n"] >= 2:
        out.update(mde=mde(out["std"], out["n"], level=level), seeds_needed=pairs_needed(out["std"], level=level))
    return out


def clustered_interval(values: Mapping[Any, Sequence[float]], level: float = LEVEL) -> dict[str, Any]:
    """Mean gain over every (cluster, replicate) pair, with a cluster-robust standard error.

    ``values`` maps a cluster (a split) to its replicates (training seeds). The
    SE is the CR1 sandwich for a mean, ``sqrt(G/(G−1) · Σ_g (Σ_j e_gj)²) / N``,
    and the interval uses t with G − 1 degrees of freedom: replicates of one
    split share its noise and cannot count as independent pairs. Also returns
    the spread split into training noise (pooled within-split std) and split
    noise (std over splits of the split means).
    """
    clusters = {k: _clean(v) for k, v in values.items()}
    clusters = {k: v for k, v in clusters.items() if v.size}
    all_values = np.concatenate(list(clusters.values())) if clusters else np.zeros(0)
    groups, total = len(clusters), int(all_values.size)
    out: dict[str, Any] = {
        "mean": None,
        "se": None,
        "n": total,
        "clusters": groups,
        "ci_low": None,
        "ci_high": None,
        "verdict": NO_EFFECT,
        "training_std": None,
        "split_std": None,
    }
    if total == 0:
        return out
    mean = float(all_values.mean())
    out["mean"] = mean
    within = [float(((v - v.mean()) ** 2).sum()) for v in clusters.values()]
    within_df = sum(v.size - 1 for v in clusters.values())
    if within_df > 0:
        out["training_std"] = math.sqrt(sum(within) / within_df)
    if groups > 1:
        out["split_std"] = float(np.std([v.mean() for v in clusters.values()], ddof=1))
        scores = np.asarray([float((v - mean).sum()) for v in clusters.values()])
        se = math.sqrt(groups / (groups - 1) * float((scores**2).sum())) / total
        low, high = t_interval(mean, se, groups - 1, level)
        out.update(se=se, ci_low=low, ci_high=high, verdict=verdict(low, high))
    return out


def wilcoxon_test(values: Sequence[float | None]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired gains over data sets (``scipy.stats.wilcoxon``).

    Unlike a t test over data sets it does not assume the gains are normal or
    commensurable; all-zero gains give p = 1.
    """
    arr = _clean(values)
    out: dict[str, Any] = {"n": int(arr.size), "statistic": None, "p": None}
    if arr.size == 0:
        return out
    if not np.any(arr != 0):
        out.update(statistic=0.0, p=1.0)
        return out
    result = stats.wilcoxon(arr, zero_method="wilcox", alternative="two-sided")
    out.update(statistic=float(result.statistic), p=float(result.pvalue))
    return out


def counts(verdicts: Sequence[str]) -> dict[str, int]:
    """Win / tie / loss: ``helps`` / ``no detectable effect`` / ``hurts``."""
    return {
        "wins": sum(v == HELPS for v in verdicts),
        "ties": sum(v == NO_EFFECT for v in verdicts),
        "losses": sum(v == HURTS for v in verdicts),
    }


def annotate_gains(gains: Sequence[dict[str, Any]], metrics: Sequence[str]) -> None:
    """Add interval, verdict, MDE and seeds needed to each gain entry's metrics, in place (from ``by_seed``)."""
    for entry in gains:
        for metric in metrics:
            block = entry.get(metric)
            if not isinstance(block, dict) or "by_seed" not in block:
                continue
            block.update(paired_gain(list(block["by_seed"].values())))


def describe() -> dict[str, Any]:
    """What the fields mean (``summary.json``'s ``significance`` block)."""
    return {
        "test": "paired t over seeds (same split per seed)",
        "level": LEVEL,
        "power": POWER,
        "resolve": RESOLVE,
        "verdicts": list(VERDICTS),
        "mde": f"true gain a two-sided {1 - LEVEL:.0%} paired t test detects with {POWER:.0%} power at this n",
        "seeds_needed": f"pairs at which the MDE is at most {RESOLVE}",
    }
