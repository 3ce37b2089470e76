"""Forest plots of paired gains and the critical-difference diagram: the pictures of significance.

A forest plot puts every gain on one axis: a dot at the mean, a bar for its
95% interval, a line at zero, and the verdict as colour, so that "which rows
really help" is one glance. The CD diagram (Demšar 2006) places methods by
average rank and joins those Nemenyi cannot tell apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ahl_plugins.evaluation.figures import figure, wrapped
from ahl_plugins.evaluation.significance import HELPS, HURTS, NO_EFFECT
from ahl_plugins.evaluation.tables import METRIC_NAMES, gain_label

VERDICT_COLOURS = {HELPS: "#2ca02c", HURTS: "#d62728", NO_EFFECT: "#7f7f7f"}


@dataclass(frozen=True)
class ForestLine:
    """One row of a forest plot: a gain's label, mean, 95% interval (None with one seed) and verdict."""

    label: str
    mean: float
    low: float | None
    high: float | None
    verdict: str


def forest_plot(lines: Sequence[ForestLine], path: Path, title: str, xlabel: str) -> Path:
    """One row per line, top to bottom in the given order; returns ``path``."""
    # Drawn at the width a page shows it (about 1,000-1,250 px at 100 dpi) with 9-point labels, so it is read
    # at its own size rather than shrunk into a thumbnail.
    height = 1.5 + 0.34 * max(len(lines), 1)
    width = min(12.5, 6.5 + 0.075 * max((len(line.label) for line in lines), default=0))
    fig = figure(width, height)
    ax = fig.subplots()
    for i, line in enumerate(lines):
        y = len(lines) - 1 - i
        colour = VERDICT_COLOURS.get(line.verdict, VERDICT_COLOURS[NO_EFFECT])
        if line.low is not None and line.high is not None:
            ax.plot([line.low, line.high], [y, y], color=colour, lw=2.0, solid_capstyle="butt")
        ax.plot([line.mean], [y], "o", color=colour, ms=5)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(lines)), [line.label for line in reversed(lines)], fontsize=9)
    ax.set_ylim(-0.7, len(lines) - 0.3)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.tick_params(axis="x", labelsize=9)
    ax.set_title(wrapped(title, width, 11), fontsize=11)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in VERDICT_COLOURS.items()]
    fig.legend(handles=handles, fontsize=9, loc="outside lower center", ncol=len(handles), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path)
    return path


def compare_forest_lines(summary: Mapping[str, Any], metric: str) -> list[ForestLine]:
    """Every gain of a compare summary with an interval or a mean, in the summary's order."""
    lines = []
    for entry in summary.get("gains", []):
        block = entry.get(metric) or {}
        if block.get("mean") is None:
            continue
        where = f"{entry['setting']} M={entry['n_anomalies']}"
        if entry["setting"] == "hard":
            where += f" {entry['seen_type']}"
        label = f"{gain_label(entry['model'], entry['variant'])}, {where} (n={block.get('n', 0)})"
        lines.append(
            ForestLine(label, block["mean"], block.get("ci_low"), block.get("ci_high"), block.get("verdict", NO_EFFECT))
        )
    return lines


def forest_plots(summary: Mapping[str, Any], directory: Path) -> list[Path]:
    """``forest_<metric>.png`` for AUC-ROC and AUC-PR of a compare (when it has gains)."""
    written = []
    for metric in ("auc_roc", "auc_pr"):
        lines = compare_forest_lines(summary, metric)
        if lines:
            title = f"Paired gains in {METRIC_NAMES[metric]}: mean and 95% interval over seeds"
            written.append(
                forest_plot(lines, directory / f"forest_{metric}.png", title, f"gain in {METRIC_NAMES[metric]}")
            )
    return written


def cd_diagram(ranks: Mapping[str, float], cd: float, cliques: Sequence[Sequence[str]], path: Path, title: str) -> Path:
    """Methods on an average-rank axis (1 = best, on the left); a bar joins each group not told apart."""
    names = sorted(ranks, key=lambda n: ranks[n])
    k = len(names)
    half = (k + 1) // 2  # the better half labelled on the left, the rest on the right
    fig = figure(8.0, 1.4 + 0.35 * half + 0.12 * len(cliques))
    ax = fig.subplots()
    low, high = 1, max(k, 2)
    margin = 0.35 * (high - low) + 0.8  # room for the names beside the axis
    ax.set_xlim(low - margin, high + margin)
    ax.set_ylim(-0.5 * (half + 0.6) - 0.12 * len(cliques), 1.6)
    ax.axhline(0.0, color="black", lw=1.0)
    for r in range(low, high + 1):
        ax.plot([r, r], [0, 0.12], color="black", lw=1.0)
        ax.text(r, 0.22, str(r), ha="center", va="bottom", fontsize=8)
    ax.plot([low, low + cd], [1.2, 1.2], color="black", lw=1.5)
    ax.text(low + cd / 2, 1.3, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    for i, name in enumerate(names):
        rank = ranks[name]
        left = i < half
        depth = -0.5 * ((i if left else k - 1 - i) + 1)
        x_text = low - 0.25 if left else high + 0.25
        ax.plot([rank, rank, x_text], [0, depth, depth], color="#1f77b4", lw=0.9)
        ax.text(x_text, depth, f"{name} ({rank:.2f})", ha="right" if left else "left", va="center", fontsize=8)
    for j, clique in enumerate(cliques):
        values = [ranks[n] for n in clique]
        y = -0.15 - 0.12 * j
        ax.plot([min(values) - 0.03, max(values) + 0.03], [y, y], color="#d62728", lw=3.0, solid_capstyle="round")
    ax.set_axis_off()
    ax.set_title(wrapped(title, 8.0, 10), fontsize=10)
    fig.savefig(path)
    return path
