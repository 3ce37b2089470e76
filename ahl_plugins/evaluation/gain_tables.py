"""The paired-gain table of a compare: interval, verdict, power and DeLong per seed, for every gain.

A reader should not have to judge "± std" by eye: each row says whether the
95% interval excludes zero, how large a gain this many seeds could have
detected, and how many seeds would resolve ±0.01.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ahl_plugins.evaluation.significance import HELPS, HURTS, LEVEL, NO_EFFECT, POWER, RESOLVE
from ahl_plugins.evaluation.summary import MEAN_TYPE, metric_present
from ahl_plugins.evaluation.tables import METRIC_NAMES, gain_label, interval, render, signed


def _delong_cell(entry: Mapping[str, Any]) -> str:
    tally = entry.get("delong_counts")
    if not tally:
        return "-"
    return f"{tally['wins']} / {tally['ties']} / {tally['losses']}"


def has_delong(summary: Mapping[str, Any]) -> bool:
    """Whether any gain has DeLong per seed (compares whose cells kept their test scores)."""
    return any(entry.get("delong_counts") for entry in summary.get("gains", []))


def gain_rows(summary: Mapping[str, Any], metric: str) -> list[list[str]]:
    """One row per gain with a mean: where, which gain, mean, interval, verdict, seeds, MDE, seeds needed, DeLong."""
    rows = []
    for entry in summary.get("gains", []):
        block = entry.get(metric) or {}
        if block.get("mean") is None:
            continue
        seen = entry["seen_type"] if entry["setting"] == "hard" else "-"
        mde = block.get("mde")
        needed = block.get("seeds_needed")
        rows.append(
            [
                entry["setting"],
                str(entry["n_anomalies"]),
                seen,
                gain_label(entry["model"], entry["variant"]),
                signed(block["mean"]),
                interval(block),
                block.get("verdict", "-"),
                str(block.get("n", 0)),
                "-" if mde is None else f"{mde:.3f}",
                "-" if needed is None else str(needed),
                _delong_cell(entry) if metric == "auc_roc" else "-",
            ]
        )
    return rows


HEADERS = [
    "setting",
    "M",
    "seen",
    "gain",
    "mean",
    f"{LEVEL:.0%} CI",
    "verdict",
    "seeds",
    f"MDE ({POWER:.0%} power)",
    f"seeds for ±{RESOLVE}",
    "DeLong per seed helps / none / hurts",
]


def gain_table(summary: Mapping[str, Any], metric: str, markdown: bool = False) -> str | None:
    """The table for ``metric``, or None when the compare has no gains in it; no DeLong column without cell scores."""
    rows = gain_rows(summary, metric)
    if not rows:
        return None
    if has_delong(summary):
        return render(HEADERS, rows, markdown)
    return render(HEADERS[:-1], [row[:-1] for row in rows], markdown)


def noise_table(summary: Mapping[str, Any], metric: str, markdown: bool = False) -> str | None:
    """With ``--train-seeds``: per gain, training noise and split noise apart, and the cluster-robust interval."""
    rows = []
    for entry in summary.get("gains", []):
        rep = (entry.get(metric) or {}).get("replicates")
        if not rep or rep.get("mean") is None:
            continue
        seen = entry["seen_type"] if entry["setting"] == "hard" else "-"
        rows.append(
            [
                entry["setting"],
                str(entry["n_anomalies"]),
                seen,
                gain_label(entry["model"], entry["variant"]),
                f"{rep['n']} ({rep['clusters']} splits)",
                signed(rep["mean"]),
                _spread(rep.get("training_std")),
                _spread(rep.get("split_std")),
                interval(rep),
                rep.get("verdict", "-"),
            ]
        )
    headers = [
        "setting",
        "M",
        "seen",
        "gain",
        "pairs",
        "mean",
        "training std",
        "split std",
        f"{LEVEL:.0%} CI (splits as clusters)",
        "verdict",
    ]
    return render(headers, rows, markdown) if rows else None


def _spread(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def gain_sections(summary: Mapping[str, Any], metrics: Sequence[str], markdown: bool = False) -> list[tuple[str, str]]:
    """Per metric present: ``(title, table)`` of the paired gains, and of training vs split noise when replicated."""
    out = []
    for metric in metrics:
        if not metric_present(summary, metric):
            continue
        table, noise = gain_table(summary, metric, markdown), noise_table(summary, metric, markdown)
        if table:
            out.append((f"Paired gains in {METRIC_NAMES[metric]}", table))
        if noise:
            out.append((f"Training noise and split noise in {METRIC_NAMES[metric]}", noise))
    return out


NOISE_EXPLAINED = (
    "Each split was fitted with several training seeds; base and AHL are paired on (split, training seed). "
    "*training std*: the gain's spread between training seeds of one split (pooled); *split std*: the spread "
    "of the split means. The interval treats each split's fits as one cluster (cluster-robust SE, t with "
    "splits − 1 degrees of freedom): replicates of one split share its data and cannot count as independent pairs."
)

EXPLAINED = (
    f"*mean* is the paired gain over seeds, *{LEVEL:.0%} CI* its paired t interval. *helps* / *hurts*: the interval "
    "lies above / below 0; *no detectable effect*: it contains 0, which is not proof of no effect: the *MDE* is the "
    f"true gain a two-sided {1 - LEVEL:.0%} test at this many seeds would detect with {POWER:.0%} power (from the "
    f"observed spread), and *seeds for ±{RESOLVE}* how many seeds bring the MDE down to {RESOLVE}. With "
    "--train-seeds a seed's gain is the mean over that split's training seeds, so *seeds* counts splits."
)
DELONG_EXPLAINED = (
    "*DeLong per seed*: on each seed's single split, how often the AUC-ROC difference's DeLong interval "
    "(test-set noise only) lies above 0, contains 0, or lies below it."
)


def verdict_line(summary: Mapping[str, Any], metric: str = "auc_roc") -> str | None:
    """ "AHL(devnet) − devnet: 2 helps, 5 no detectable effect, 1 hurts; ..." over the per-type rows."""
    tallies = verdict_counts(summary, metric)
    if not tallies:
        return None
    parts = [
        f"{label}: {t[HELPS]} helps, {t[NO_EFFECT]} no detectable effect, {t[HURTS]} hurts"
        for label, t in tallies.items()
    ]
    return "Verdicts by row: " + "; ".join(parts) + "."


def verdict_counts(summary: Mapping[str, Any], metric: str = "auc_roc") -> dict[str, dict[str, int]]:
    """Per gain label: how many groups read helps / no detectable effect / hurts (hard means left out)."""
    out: dict[str, dict[str, int]] = {}
    for entry in summary.get("gains", []):
        block = entry.get(metric) or {}
        if block.get("mean") is None or entry["seen_type"] == MEAN_TYPE:
            continue
        tally = out.setdefault(gain_label(entry["model"], entry["variant"]), {HELPS: 0, NO_EFFECT: 0, HURTS: 0})
        tally[block.get("verdict", NO_EFFECT)] += 1
    return out
