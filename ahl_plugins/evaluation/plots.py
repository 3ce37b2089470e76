"""PNG plots of a compare directory, drawn from the files the cells saved.

ROC curves (base vs AHL, every seed, per model, setting and M), per-type
gain bars for the hard setting, the forest plot of every paired gain with
its interval and verdict (:mod:`.forest`), and the SGE task-weight
trajectory of one AHL run per model. Figures come from :func:`.figures.figure`
(Agg backend, no pyplot state).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ahl_plugins.evaluation.cell_delong import load_cell_scores
from ahl_plugins.evaluation.figures import figure, wrapped
from ahl_plugins.evaluation.forest import forest_plots
from ahl_plugins.evaluation.grid import AHL, BASE, KNN, slug
from ahl_plugins.evaluation.summary import MEAN_TYPE, SUMMARY_JSON
from ahl_plugins.evaluation.tables import gain_label

PLOTS_DIR = "plots"
COLOURS = {KNN: "#7f7f7f", BASE: "#1f77b4", AHL: "#d62728"}
EXTRA_COLOURS = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _colour(variant: str, extras: dict[str, str]) -> str:
    if variant in COLOURS:
        return COLOURS[variant]
    return extras.setdefault(variant, EXTRA_COLOURS[len(extras) % len(EXTRA_COLOURS)])


def roc_plots(output: Path, rows: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """One figure per (model, setting, M): a panel per seen type, one curve per seed and variant."""
    from ahl_plugins.evaluation.metrics import roc_points

    ok = [r for r in rows if r.get("status") == "ok"]
    knn = defaultdict(list)
    for r in ok:
        if r["variant"] == KNN:
            knn[(r["setting"], r["n_anomalies"], r["seen_type"])].append(r)
    figures: dict[tuple[str, str, int], dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in ok:
        if r["variant"] != KNN:
            figures[(r["model"], r["setting"], r["n_anomalies"])][r["seen_type"]].append(r)
    written = []
    for (model, setting, m), panels in sorted(figures.items()):
        types = sorted(panels)
        cols = min(len(types), 3)
        n_rows = (len(types) + cols - 1) // cols
        width = 4.2 * cols
        fig = figure(width, 3.9 * n_rows)
        axes = np.atleast_1d(fig.subplots(n_rows, cols, squeeze=False)).reshape(-1)
        extras: dict[str, str] = {}
        for ax, seen in zip(axes, types, strict=False):  # the grid can hold more axes than types
            members = list(panels[seen]) + knn.get((setting, m, seen), [])
            by_variant: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
            for r in members:
                by_variant[r["variant"]].append(r)
            for variant, cells in sorted(by_variant.items(), key=lambda kv: (kv[0] != KNN, kv[0] != BASE, kv[0])):
                colour = _colour(variant, extras)
                aucs = [c["auc_roc"] for c in cells if c.get("auc_roc") is not None]
                label = f"{variant} (AUC {np.mean(aucs):.3f}, {len(aucs)} seed{'s' if len(aucs) != 1 else ''})"
                for i, cell in enumerate(sorted(cells, key=lambda c: c["seed"])):
                    loaded = load_cell_scores(output, cell["cell_id"])
                    if loaded is None:
                        continue
                    fpr, tpr = roc_points(loaded[0], loaded[1])
                    ax.plot(
                        fpr,
                        tpr,
                        color=colour,
                        alpha=0.75,
                        lw=1.2,
                        ls="--" if variant == KNN else "-",
                        label=label if i == 0 else None,
                    )
            ax.plot([0, 1], [0, 1], color="black", lw=0.6, alpha=0.4)
            title = f"seen: {seen}" if setting == "hard" else "general"
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("false-positive rate")
            ax.set_ylabel("true-positive rate")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="lower right")
            else:
                ax.text(0.5, 0.5, "saved scores not found", ha="center", va="center", transform=ax.transAxes)
        for ax in axes[len(types) :]:
            ax.set_visible(False)
        fig.suptitle(wrapped(f"ROC: {model}, base vs AHL, {setting} setting, M = {m}", width, 11), fontsize=11)
        path = directory / f"roc_{slug(model)}_{setting}_M{m}.png"
        fig.savefig(path)
        written.append(path)
    return written


def gain_plots(summary: Mapping[str, Any], directory: Path) -> list[Path]:
    """Hard setting: the paired gain of each AHL variant over its base, per seen type (mean ± std)."""
    gains = [g for g in summary.get("gains", []) if g["setting"] == "hard"]
    by_m: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for g in gains:
        by_m[g["n_anomalies"]].append(g)
    written = []
    for m, members in sorted(by_m.items()):
        types = sorted({g["seen_type"] for g in members}, key=lambda t: (t == MEAN_TYPE, t))
        series = sorted({(g["model"], g["variant"]) for g in members})
        fig_width = max(7.0, 1.2 * len(types) * max(1, len(series)) ** 0.5 + 2)
        fig = figure(fig_width, 6.4)
        axes = fig.subplots(2, 1, squeeze=False).reshape(-1)
        width = 0.8 / max(len(series), 1)
        x = np.arange(len(types))
        for ax, metric, name in zip(axes, ("auc_roc", "auc_pr"), ("AUC-ROC", "AUC-PR"), strict=True):
            for i, (model, variant) in enumerate(series):
                lookup = {g["seen_type"]: g[metric] for g in members if (g["model"], g["variant"]) == (model, variant)}
                means = [lookup.get(t, {}).get("mean") for t in types]
                stds = [lookup.get(t, {}).get("std") or 0.0 for t in types]
                heights = [v if v is not None else 0.0 for v in means]
                ax.bar(
                    x + (i - (len(series) - 1) / 2) * width,
                    heights,
                    width,
                    yerr=stds,
                    capsize=3,
                    label=gain_label(model, variant),
                )
            ax.axhline(0, color="black", lw=0.8)
            ax.set_xticks(x, [t if t != MEAN_TYPE else "mean" for t in types], rotation=20, fontsize=8)
            ax.set_ylabel(f"gain in {name}")
            ax.legend(fontsize=7)
        title = f"Paired gain of AHL over its base model, hard setting, M = {m} (mean ± std over seeds)"
        fig.suptitle(wrapped(title, fig_width, 11), fontsize=11)
        axes[1].set_xlabel("seen anomaly type")
        path = directory / f"gain_hard_M{m}.png"
        fig.savefig(path)
        written.append(path)
    return written


def weight_trajectory(history: Mapping[str, Any]) -> tuple[np.ndarray, list[str]] | None:
    """``E×T`` task weights used in each epoch of an AHL run, and a label per task."""
    epochs = history.get("epochs") if isinstance(history, Mapping) else None
    if not epochs or not all(isinstance(e, Mapping) and e.get("weights") for e in epochs):
        return None
    weights = np.asarray([e["weights"] for e in epochs], dtype=np.float64)
    labels = []
    for i, task in enumerate(history.get("tasks") or [{}] * weights.shape[1]):
        if task.get("kind") == "clusters" and task.get("support_cluster") is not None:
            labels.append(f"task {i}: cluster {task['support_cluster']} → {task['query_cluster']}")
        else:
            labels.append(f"task {i}" + (f" ({task['kind']})" if task.get("kind") else ""))
    labels += [f"task {i}" for i in range(len(labels), weights.shape[1])]
    return weights, labels[: weights.shape[1]]


def sge_plots(output: Path, rows: Sequence[Mapping[str, Any]], directory: Path) -> list[Path]:
    """The task weights per epoch of the first AHL run of each model (what SGE decided)."""
    written = []
    seen_models = set()
    for row in rows:
        if row.get("status") != "ok" or row["variant"] != AHL or row["model"] in seen_models:
            continue
        path = output / "cells" / f"{row['cell_id']}.json"
        if not path.is_file():
            continue
        history = json.loads(path.read_text()).get("history")
        trajectory = weight_trajectory(history or {})
        if trajectory is None:
            continue
        seen_models.add(row["model"])
        weights, labels = trajectory
        width = 6.4
        fig = figure(width, 4.0)
        ax = fig.subplots()
        epochs = np.arange(1, weights.shape[0] + 1)
        for t in range(weights.shape[1]):
            ax.plot(epochs, weights[:, t], marker="o", ms=3, lw=1.2, label=labels[t])
        ax.axhline(1.0 / weights.shape[1], color="black", lw=0.7, ls=":", label="uniform 1/T")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("task weight w_i")
        estimator = history.get("estimator") or "?"
        ax.set_title(wrapped(f"AHL task weights ({estimator}): {row['cell_id']}", width, 9), fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        target = directory / f"sge_weights_{slug(row['model'])}.png"
        fig.savefig(target)
        written.append(target)
    return written


def write_plots(
    output: str | Path, rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any] | None = None
) -> list[Path]:
    """Every plot of a compare directory into ``output/plots``; returns the files written."""
    output = Path(output)
    directory = output / PLOTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    if summary is None:
        summary_path = output / SUMMARY_JSON
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return (
        roc_plots(output, rows, directory)
        + gain_plots(summary, directory)
        + forest_plots(summary, directory)
        + sge_plots(output, rows, directory)
    )
