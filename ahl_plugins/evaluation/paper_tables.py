"""A compare summary laid out as the paper lays out its results: one table per setting and M.

Rows are seen types (and their mean), columns k-NN, then per model the base,
each AHL variant and its paired gain (mean ± std over seeds), so a reader can
put our rows beside the published ones. Also the per-type pixel table and the
times per cell. Whether a gain is real is the business of :mod:`.gain_tables`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from ahl_plugins.evaluation.grid import ABLATIONS, AHL, BASE, KNN
from ahl_plugins.evaluation.summary import MEAN_TYPE
from ahl_plugins.evaluation.tables import METRIC_NAMES, fmt, render, seconds, variant_label, variant_rank

Column = tuple[str, tuple[str, str, str]]  # header, (kind "g" group / "d" gain, model, variant)


def _columns(members: list[Mapping[str, Any]]) -> list[Column]:
    knns = sorted({g["model"] for g in members if g["variant"] == KNN})
    models = sorted({g["model"] for g in members if g["variant"] != KNN})
    columns: list[Column] = [(k if len(knns) > 1 else "k-NN", ("g", k, KNN)) for k in knns]
    for model in models:
        present = sorted({g["variant"] for g in members if g["model"] == model}, key=variant_rank)
        for variant in present:
            columns.append((variant_label(model, variant), ("g", model, variant)))
            if variant != BASE and BASE in present:
                columns.append(
                    ("gain" if variant == AHL else f"gain {ABLATIONS.get(variant, variant)}", ("d", model, variant))
                )
    return columns


def paper_tables(summary: Mapping[str, Any], metric: str, markdown: bool = False) -> list[tuple[str, str]]:
    """``(title, table)`` per (setting, M); seen types whose splits were impossible appear as "skipped" rows."""
    gains = {(g["model"], g["variant"], g["setting"], g["n_anomalies"], g["seen_type"]): g for g in summary["gains"]}
    blocks: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for g in summary["groups"]:
        blocks[(g["setting"], g["n_anomalies"])].append(g)
    skipped: dict[tuple[str, int], set[str]] = defaultdict(set)
    for p in summary.get("skipped", []):
        if p["status"] == "skipped":
            skipped[(p["setting"], p["n_anomalies"])].add(p["seen_type"])
            blocks.setdefault((p["setting"], p["n_anomalies"]), [])
    out = []
    for (setting, m), members in sorted(blocks.items(), key=lambda kv: (kv[0][0] != "general", kv[0][1])):
        columns = _columns(members)
        by_key = {(g["model"], g["variant"], g["seen_type"]): g for g in members}
        with_results = {g["seen_type"] for g in members}
        only_skipped = skipped.get((setting, m), set()) - with_results
        seen_types = sorted(with_results | only_skipped, key=lambda t: (t == MEAN_TYPE, t))
        n_types = len([t for t in seen_types if t != MEAN_TYPE])
        rows = []
        for seen in seen_types:
            if seen in only_skipped:
                rows.append([seen] + ["skipped"] * max(len(columns), 1))
                continue
            if seen == MEAN_TYPE:
                covered = max((len(g.get("types", ())) for g in members if g["seen_type"] == MEAN_TYPE), default=0)
                cells = ["mean over types" if covered >= n_types else f"mean ({covered} of {n_types} types)"]
            else:
                cells = [seen]
            for _, (kind, model, variant) in columns:
                if kind == "g":
                    cells.append(fmt(by_key.get((model, variant, seen), {}).get(metric)))
                else:
                    cells.append(fmt(gains.get((model, variant, setting, m, seen), {}).get(metric), signed=True))
            rows.append(cells)
        first = "seen type" if setting == "hard" else "seen"
        headers = [first] + [c[0] for c in columns] if columns else [first, "result"]
        out.append((f"{METRIC_NAMES[metric]}, {setting} setting, M = {m}", render(headers, rows, markdown)))
    return out


def pixel_type_tables(summary: Mapping[str, Any], markdown: bool = False) -> list[tuple[str, str]]:
    """Per (setting, M, seen type): rows = anomaly types, columns = model variants, cells "pixel AUROC / AUPRO"."""
    blocks: dict[tuple[str, int, str], list[Mapping[str, Any]]] = defaultdict(list)
    for e in summary.get("pixel_types", []):
        blocks[(e["setting"], e["n_anomalies"], e["seen_type"])].append(e)
    out = []
    for (setting, m, seen), members in blocks.items():
        variants = sorted({(e["model"], e["variant"]) for e in members}, key=lambda mv: (mv[0], variant_rank(mv[1])))
        kinds = sorted({e["type"] for e in members}, key=lambda t: (t != "all", t))
        by_key = {(e["model"], e["variant"], e["type"]): e for e in members}
        rows = []
        for kind in kinds:
            cells = [kind]
            for model, variant in variants:
                e = by_key.get((model, variant, kind), {})
                cells.append(f"{fmt(e.get('pixel_auroc'))} / {fmt(e.get('pixel_aupro'))}" if e else "-")
            rows.append(cells)
        where = "" if setting == "general" else f", seen = {seen}"
        title = f"pixel AUROC / AUPRO by anomaly type, {setting} setting, M = {m}{where}"
        out.append((title, render(["anomaly type"] + [variant_label(mo, v) for mo, v in variants], rows, markdown)))
    return out


def times_table(summary: Mapping[str, Any], markdown: bool = False) -> str:
    """Mean seconds per cell and variant, and AHL's training time against its base's."""
    rows = [
        [
            e["model"],
            e["variant"],
            str(e["cells"]),
            seconds(e["fit_seconds"]),
            seconds(e["train_seconds"]),
            seconds(e["score_seconds"]),
            f"{e['train_ratio_vs_base']:.1f}×" if e.get("train_ratio_vs_base") else "-",
        ]
        for e in summary["times"]
    ]
    headers = ["model", "variant", "cells", "fit s (mean)", "train s", "score s", "train time vs base"]
    return render(headers, rows, markdown)
