"""From cell rows to what people read: ``summary.json``, ``summary.md`` and a console table.

Numbers are mean ± sample standard deviation (ddof = 1) over seeds. The gain
of an AHL variant is paired: on each seed it is AHL minus base on the *same*
split (with ``--train-seeds``, on the same split and training seed, averaged
over a split's training seeds), then mean ± std of those differences, which is tighter and more
honest than subtracting two means. In the hard setting the "mean" row
averages over seen types per seed first (the paper's tables), then over seeds.
Every gain also carries its 95% paired t interval, a verdict, the minimum
detectable effect and the seeds needed to resolve ±0.01
(:mod:`.significance`), and per seed DeLong's test on that split's test set
(:mod:`.cell_delong`), so a reader need not judge "± std" by eye.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ahl_plugins.atomic import atomic_write_text
from ahl_plugins.evaluation.grid import ABLATIONS, AHL, BASE, KNN, VARIANT_ORDER

METRICS = ("auc_roc", "auc_pr")
#: From anomaly maps, on data with ground-truth masks (``evaluation.pixel``); absent (None) elsewhere.
PIXEL_METRICS = ("pixel_auroc", "pixel_aupro")
ALL_METRICS = METRICS + PIXEL_METRICS
METRIC_NAMES = {"auc_roc": "AUC-ROC", "auc_pr": "AUC-PR", "pixel_auroc": "pixel AUROC", "pixel_aupro": "AUPRO"}
MEAN_TYPE = "mean"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"

GroupKey = tuple[str, str, int, str]  # model, setting, n_anomalies, seen_type


def stats(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std and count over seeds, ignoring missing values."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0, "n": int(arr.size)}


def chance_beyond_one_std(n: int) -> float | None:
    """P(mean < −std) for n paired gains of a method with no effect (normal noise): P(t_{n−1} < −√n).

    A row "loses beyond one std over seeds" this often by noise alone: 0.11 at 3 seeds, 0.045 at 5, 0.006 at 10;
    reports quote it so that a count of losing rows can be read against what chance gives. None below 2 seeds.
    """
    if n < 2:
        return None
    from scipy.stats import t

    return float(t.sf(math.sqrt(n), n - 1))


def _by_replicate(rows: Iterable[Mapping[str, Any]], metric: str) -> dict[tuple[int, int], float]:
    """``{(split seed, training seed): value}``; rows from before ``--train-seeds`` trained with the split's seed."""
    out = {}
    for r in rows:
        if r.get(metric) is not None:
            seed = int(r["seed"])
            train = r.get("train_seed")
            out[(seed, seed if train is None else int(train))] = float(r[metric])
    return out


def _per_seed(values: Mapping[tuple[int, int], float]) -> tuple[dict[int, float], dict[int, list[float]]]:
    """The mean over a split's training seeds per split seed, and the replicates themselves."""
    clusters: dict[int, list[float]] = defaultdict(list)
    for (seed, _train), value in sorted(values.items()):
        clusters[seed].append(value)
    return {seed: float(np.mean(v)) for seed, v in clusters.items()}, dict(clusters)


def _by_seed(rows: Iterable[Mapping[str, Any]], metric: str) -> dict[int, float]:
    return _per_seed(_by_replicate(rows, metric))[0]


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Group the finished rows: per cell group stats, paired gains, means over hard types, times."""
    ok = [r for r in rows if r.get("status") == "ok"]
    by_group: dict[tuple[str, str, str, int, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in ok:
        by_group[(row["model"], row["variant"], row["setting"], int(row["n_anomalies"]), row["seen_type"])].append(row)

    groups = []
    for (model, variant, setting, m, seen), members in by_group.items():
        entry: dict[str, Any] = {
            "model": model,
            "variant": variant,
            "setting": setting,
            "n_anomalies": m,
            "seen_type": seen,
            "seeds": sorted({int(r["seed"]) for r in members}),
        }
        for metric in ALL_METRICS:
            per_seed = _by_seed(members, metric)
            entry[metric] = {**stats(list(per_seed.values())), "by_seed": {str(s): v for s, v in sorted(per_seed.items())}}
        for timing in ("fit_seconds", "train_seconds", "score_seconds"):
            entry[timing] = stats([r.get(timing) for r in members])["mean"]
        groups.append(entry)

    gains = []
    for (model, variant, setting, m, seen), members in by_group.items():
        if variant in (BASE, KNN):
            continue
        base = by_group.get((model, BASE, setting, m, seen), [])
        entry = {"model": model, "variant": variant, "setting": setting, "n_anomalies": m, "seen_type": seen}
        for metric in ALL_METRICS:
            a, b = _by_replicate(members, metric), _by_replicate(base, metric)
            diffs, clusters = _per_seed({k: a[k] - b[k] for k in set(a) & set(b)})
            entry[metric] = {**stats(list(diffs.values())), "by_seed": {str(s): v for s, v in diffs.items()}}
            if any(len(v) > 1 for v in clusters.values()):
                from ahl_plugins.evaluation.significance import clustered_interval

                # paired on (split, training seed); a split's replicates are one cluster
                entry[metric]["replicates"] = clustered_interval(clusters)
        gains.append(entry)

    pixel_types = _pixel_types(ok)
    groups += _type_means(groups, "groups")
    gains += _type_means(gains, "gains")
    from ahl_plugins.evaluation.significance import annotate_gains

    annotate_gains(gains, ALL_METRICS)
    sort_key = _sort_key
    groups.sort(key=sort_key)
    gains.sort(key=sort_key)
    return {"groups": groups, "gains": gains, "times": _times(ok), "pixel_types": pixel_types}


def _pixel_types(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pixel AUROC / AUPRO per anomaly type (that type's test images + all test normals), mean ± std over seeds."""
    values: dict[tuple[str, str, str, int, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if not row.get("pixel_by_type"):
            continue
        by_type = json.loads(row["pixel_by_type"]) if isinstance(row["pixel_by_type"], str) else row["pixel_by_type"]
        key = (row["model"], row["variant"], row["setting"], int(row["n_anomalies"]), row["seen_type"])
        for kind, metrics in by_type.items():
            for metric in PIXEL_METRICS:
                if metrics.get(metric) is not None:
                    values[(*key, kind)][metric].append(float(metrics[metric]))
    out = []
    for (model, variant, setting, m, seen, kind), metrics in values.items():
        entry = {"model": model, "variant": variant, "setting": setting, "n_anomalies": m, "seen_type": seen, "type": kind}
        entry.update({metric: stats(metrics.get(metric, [])) for metric in PIXEL_METRICS})
        out.append(entry)
    out.sort(key=lambda e: (_sort_key(e), e["type"] != "all", e["type"]))
    return out


def pixel_type_tables(summary: Mapping[str, Any], markdown: bool = False) -> list[tuple[str, str]]:
    """Per (setting, M, seen type): rows = anomaly types, columns = model variants, cells "pixel AUROC / AUPRO"."""
    blocks: dict[tuple[str, int, str], list[Mapping[str, Any]]] = defaultdict(list)
    for e in summary.get("pixel_types", []):
        blocks[(e["setting"], e["n_anomalies"], e["seen_type"])].append(e)
    out = []
    for (setting, m, seen), members in blocks.items():
        variants = sorted({(e["model"], e["variant"]) for e in members}, key=lambda mv: (mv[0], _variant_rank(mv[1])))
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


def _present(summary: Mapping[str, Any], metric: str) -> bool:
    """Image metrics always show; pixel metrics only when some cell has them (data with masks)."""
    return metric not in PIXEL_METRICS or any((g.get(metric) or {}).get("mean") is not None for g in summary["groups"])


def _type_means(entries: Sequence[Mapping[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Hard setting: per seed, the mean over seen types; then mean ± std over seeds."""
    buckets: dict[tuple[str, str, str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for e in entries:
        if e["setting"] == "hard" and e["seen_type"] != MEAN_TYPE:
            buckets[(e["model"], e["variant"], e["setting"], e["n_anomalies"])].append(e)
    out = []
    for (model, variant, setting, m), members in buckets.items():
        if len(members) < 2:
            continue
        entry: dict[str, Any] = {
            "model": model,
            "variant": variant,
            "setting": setting,
            "n_anomalies": m,
            "seen_type": MEAN_TYPE,
            "types": sorted(e["seen_type"] for e in members),
        }
        for metric in ALL_METRICS:
            per_seed: dict[str, list[float]] = defaultdict(list)
            for e in members:
                for seed, value in e[metric]["by_seed"].items():
                    per_seed[seed].append(value)
            complete = {s: float(np.mean(v)) for s, v in per_seed.items() if len(v) == len(members)}
            entry[metric] = {**stats(list(complete.values())), "by_seed": dict(sorted(complete.items()))}
        if kind == "groups":
            for timing in ("fit_seconds", "train_seconds", "score_seconds"):
                entry[timing] = stats([e.get(timing) for e in members])["mean"]
        out.append(entry)
    return out


def _times(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    buckets: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        buckets[(row["model"], row["variant"])].append(row)
    out = []
    for (model, variant), members in buckets.items():
        entry = {"model": model, "variant": variant, "cells": len(members)}
        for timing in ("fit_seconds", "train_seconds", "score_seconds"):
            entry[timing] = stats([r.get(timing) for r in members])["mean"]
        base = buckets.get((model, BASE))
        if variant not in (BASE, KNN) and base:
            ahl_train = entry["train_seconds"]
            base_train = stats([r.get("train_seconds") for r in base])["mean"]
            entry["train_ratio_vs_base"] = ahl_train / base_train if ahl_train and base_train else None
        out.append(entry)
    out.sort(key=lambda e: (e["model"] != KNN and not e["model"].startswith(KNN), e["model"], _variant_rank(e["variant"])))
    return out


def _variant_rank(variant: str) -> int:
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)


def _sort_key(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        entry["setting"] != "general",
        entry["n_anomalies"],
        entry["seen_type"] == MEAN_TYPE,
        entry["seen_type"],
        not entry["model"].startswith(KNN),
        entry["model"],
        _variant_rank(entry["variant"]),
    )


def skipped_cells(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Skipped and failed cells, one entry per (setting, M, seen type, reason) with its seeds and cells."""
    grouped: dict[tuple[str, str, int, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("status") in ("skipped", "failed"):
            key = (row["status"], row["setting"], int(row["n_anomalies"]), row["seen_type"], row.get("reason") or "")
            grouped[key].append(row)
    return [
        {
            "status": status,
            "setting": setting,
            "n_anomalies": m,
            "seen_type": seen,
            "seeds": sorted({int(r["seed"]) for r in members}),
            "reason": reason,
            "cells": [r["cell_id"] for r in members],
        }
        for (status, setting, m, seen, reason), members in grouped.items()
    ]


# -- formatting -----------------------------------------------------------------------


def fmt(stat: Mapping[str, Any] | None, signed: bool = False) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{stat['mean']:{sign}.3f}"
    if stat.get("n", 0) > 1:
        text += f" ± {stat['std']:.3f}"
    return text


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def variant_label(model: str, variant: str) -> str:
    if variant == BASE:
        return model
    if variant == AHL:
        return f"AHL({model})"
    if variant in ABLATIONS:
        return f"AHL-{ABLATIONS[variant]}({model})"
    return model


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """A table as Markdown or as aligned plain text."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(x.rstrip() for x in out)


def paper_tables(summary: Mapping[str, Any], metric: str, markdown: bool = False) -> list[tuple[str, str]]:
    """One table per (setting, M), rows = seen types (+ their mean), columns = k-NN, then per model
    base, each AHL variant and its paired gain: the layout of the paper's tables. Seen types whose
    splits were impossible appear as "skipped" rows."""
    groups = summary["groups"]
    gains = {(g["model"], g["variant"], g["setting"], g["n_anomalies"], g["seen_type"]): g for g in summary["gains"]}
    blocks: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for g in groups:
        blocks[(g["setting"], g["n_anomalies"])].append(g)
    skipped: dict[tuple[str, int], set[str]] = defaultdict(set)
    for p in summary.get("skipped", []):
        if p["status"] == "skipped":
            skipped[(p["setting"], p["n_anomalies"])].add(p["seen_type"])
            blocks.setdefault((p["setting"], p["n_anomalies"]), [])
    out = []
    for (setting, m), members in sorted(blocks.items(), key=lambda kv: (kv[0][0] != "general", kv[0][1])):
        knns = sorted({g["model"] for g in members if g["variant"] == KNN})
        models = sorted({g["model"] for g in members if g["variant"] != KNN})
        by_key = {(g["model"], g["variant"], g["seen_type"]): g for g in members}
        columns: list[tuple[str, Any]] = [(k if len(knns) > 1 else "k-NN", ("g", k, KNN)) for k in knns]
        for model in models:
            present = sorted({g["variant"] for g in members if g["model"] == model}, key=_variant_rank)
            for variant in present:
                columns.append((variant_label(model, variant), ("g", model, variant)))
                if variant != BASE and BASE in present:
                    columns.append(("gain" if variant == AHL else f"gain {ABLATIONS.get(variant, variant)}", ("d", model, variant)))
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
        title = f"{METRIC_NAMES[metric]}, {setting} setting, M = {m}"
        first = "seen type" if setting == "hard" else "seen"
        headers = [first] + [c[0] for c in columns] if columns else [first, "result"]
        out.append((title, render(headers, rows, markdown)))
    return out


def times_table(summary: Mapping[str, Any], markdown: bool = False) -> str:
    rows = [
        [
            e["model"],
            e["variant"],
            str(e["cells"]),
            _seconds(e["fit_seconds"]),
            _seconds(e["train_seconds"]),
            _seconds(e["score_seconds"]),
            f"{e['train_ratio_vs_base']:.1f}×" if e.get("train_ratio_vs_base") else "-",
        ]
        for e in summary["times"]
    ]
    headers = ["model", "variant", "cells", "fit s (mean)", "train s", "score s", "train time vs base"]
    return render(headers, rows, markdown)


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(str(s) for s in seeds)


def format_table(summary: Mapping[str, Any], metrics: Sequence[str] = ALL_METRICS) -> str:
    """The plain-text report printed at the end of a compare."""
    parts = []
    for metric in metrics:
        if not _present(summary, metric):
            continue
        for title, table in paper_tables(summary, metric):
            parts.append(f"{title}\n{table}")
    for title, table in pixel_type_tables(summary):
        parts.append(f"{title}\n{table}")
    parts += [f"{title}\n{table}" for title, table in _gain_tables(summary, metrics)]
    if summary.get("times"):
        parts.append("Times per cell (seconds; fit includes feature extraction, cached after the first)\n" + times_table(summary))
    problems = summary.get("skipped", [])
    if problems:
        lines = [
            f"  {p['status']}: {p['setting']} M={p['n_anomalies']} seen={p['seen_type']} seeds={_seeds(p['seeds'])} "
            f"({len(p['cells'])} cells): {p['reason']}"
            for p in problems
        ]
        parts.append("Skipped or failed cells\n" + "\n".join(lines))
    if not parts:
        return "no finished cells"
    return "\n\n".join(parts)


def _gain_tables(summary: Mapping[str, Any], metrics: Sequence[str], markdown: bool = False) -> list[tuple[str, str]]:
    """Per metric, every paired gain with its interval, verdict, MDE and seeds needed."""
    from ahl_plugins.evaluation.gain_tables import gain_table, noise_table

    out = []
    for metric in metrics:
        if not _present(summary, metric):
            continue
        table, noise = gain_table(summary, metric, markdown), noise_table(summary, metric, markdown)
        if table:
            out.append((f"Paired gains in {METRIC_NAMES[metric]}", table))
        if noise:
            out.append((f"Training noise and split noise in {METRIC_NAMES[metric]}", noise))
    return out


def markdown_report(summary: Mapping[str, Any]) -> str:
    lines = [f"# Compare: {summary.get('dataset', '')}", ""]
    args = summary.get("arguments") or {}
    if args:
        shown = ", ".join(f"{k}={v}" for k, v in args.items() if v not in (None, {}, [], False))
        lines += [f"Arguments: {shown}", ""]
    lines += [
        (
            "Mean ± sample std over seeds. *gain* = paired difference AHL − base on the same split and seed "
            "(mean ± std over seeds; its interval and verdict are in *Paired gains* below). *k-NN*: label-free "
            "distance to the k nearest training normals on the same features."
        ),
        "",
    ]
    for metric in ALL_METRICS:
        if not _present(summary, metric):
            continue
        for title, table in paper_tables(summary, metric, markdown=True):
            lines += [f"## {title}", "", table, ""]
    for title, table in pixel_type_tables(summary, markdown=True):
        lines += [f"## {title}", "", "Each type: its test images plus all test normals (maps at <= 256 px).", "", table, ""]
    gain_tables = _gain_tables(summary, ALL_METRICS, markdown=True)
    if gain_tables:
        from ahl_plugins.evaluation.gain_tables import DELONG_EXPLAINED, EXPLAINED, NOISE_EXPLAINED, verdict_line

        lines += ["## Paired gains: intervals and verdicts", "", f"{EXPLAINED} {DELONG_EXPLAINED}", ""]
        tally = verdict_line(summary)
        if tally:
            lines += [f"{tally.replace('Verdicts by row', 'AUC-ROC verdicts by row')}", ""]
        if any("Training noise" in title for title, _ in gain_tables):
            lines += [NOISE_EXPLAINED, ""]
        lines += [line for title, table in gain_tables for line in (f"### {title}", "", table, "")]
    if summary.get("times"):
        note = "Seconds; *fit* includes feature extraction (cached after the first fit), *train* is the training loop alone."
        lines += ["## Times per cell", "", note, "", times_table(summary, markdown=True), ""]
    problems = summary.get("skipped", [])
    if problems:
        lines += ["## Skipped or failed cells", ""]
        lines += [
            f"- {p['status']}: {p['setting']}, M = {p['n_anomalies']}, seen = {p['seen_type']}, seeds {_seeds(p['seeds'])} "
            f"({len(p['cells'])} cells): {p['reason']}"
            for p in problems
        ]
        lines.append("")
    return "\n".join(lines)


def write_summary(
    rows: Sequence[Mapping[str, Any]], output: str | Path, *, config: Any = None, dataset: str = ""
) -> dict[str, Any]:
    """Write ``summary.json`` and ``summary.md`` into ``output``; return the summary."""

    from ahl_plugins.evaluation.cell_delong import add_delong
    from ahl_plugins.evaluation.significance import describe

    output = Path(output)
    summary = summarise(rows)
    add_delong(output, rows, summary["gains"])
    summary["significance"] = describe()
    summary["dataset"] = dataset
    summary["arguments"] = config.identity() if config is not None else {}
    summary["skipped"] = skipped_cells(rows)
    summary["counts"] = {
        status: sum(1 for r in rows if r.get("status") == status) for status in ("ok", "skipped", "failed")
    }
    atomic_write_text(output / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    atomic_write_text(output / SUMMARY_MD, markdown_report(summary))
    return summary
