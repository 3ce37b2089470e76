"""``ahl report DIR [DIR ...]``: several compare directories read as one study across data sets.

One compare says whether AHL helps on one data set; a user choosing a method
wants to know whether it helps *in general*. Each compare contributes rows
(data set × setting × M; in the hard setting the mean over seen types when
there is one). Per model pair (AHL(m) − m, each ablation − m) the report
gives the mean of the row gains with its t interval over rows, the Wilcoxon
signed-rank test over rows (no normality assumed across data sets) and the
win / tie / loss count of the rows' own verdicts (a tie is *no detectable
effect*). With three or more methods present on every row it ranks them
(Friedman test, Nemenyi critical difference, Demšar 2006).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ahl_plugins.errors import ReportInputError
from ahl_plugins.evaluation.grid import KNN, VARIANT_ORDER
from ahl_plugins.evaluation.ranks import friedman_nemenyi
from ahl_plugins.evaluation.significance import (
    NO_EFFECT,
    annotate_gains,
    counts,
    paired_interval,
    wilcoxon_test,
)
from ahl_plugins.evaluation.summary import ALL_METRICS, MEAN_TYPE, SUMMARY_JSON
from ahl_plugins.evaluation.tables import gain_label, variant_label

FORMAT = "ahl-plugins/report"
RowKey = tuple[str, str, int, str]  # data set label, setting, M, seen type


@dataclass
class CompareInput:
    """One compare directory as the report reads it: where it is, its data-set label and its summary."""

    directory: Path
    label: str
    summary: dict[str, Any]


def load_compare(directory: str | Path) -> CompareInput:
    """A finished compare directory's summary; :class:`ReportInputError` saying what is wrong and how to fix it.

    Summaries written before gains carried intervals get them here from their per-seed gains
    (:func:`with_intervals`), so older compare directories combine like new ones.
    """
    # imported here: the compare package pulls in its whole driver, which a report never runs
    from ahl_plugins.evaluation.compare.storage import COMPARE_FILE
    from ahl_plugins.evaluation.compare.storage import FORMAT as COMPARE_FORMAT

    path = Path(directory)
    if not path.is_dir():
        raise ReportInputError(f"{path} is not a directory; pass the --output directories of `ahl compare` runs")
    marker = path / COMPARE_FILE
    try:
        stored = json.loads(marker.read_text()) if marker.is_file() else None
    except json.JSONDecodeError:
        stored = None
    if not stored or stored.get("format") != COMPARE_FORMAT:
        raise ReportInputError(
            f"{path} is not an `ahl compare` output ({COMPARE_FILE} missing or not written by ahl compare); "
            "pass directories written by `ahl compare --output DIR`"
        )
    summary_path = path / SUMMARY_JSON
    if not summary_path.is_file():
        raise ReportInputError(
            f"{path} has no {SUMMARY_JSON}: that compare never finished; run the same `ahl compare` command again "
            "to resume it, then report"
        )
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{summary_path} is not valid JSON ({exc}); rerun that compare to rewrite it") from None
    return CompareInput(path, summary.get("dataset") or path.name, with_intervals(summary))


def with_intervals(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with each gain's interval, verdict, MDE and seeds needed, computed from ``by_seed`` where absent.

    The paired gains per seed are all the interval needs, so a summary from before the verdicts existed
    reads exactly as a new compare of the same rows would; gains that have them are left alone.
    """
    missing = [
        g
        for g in summary.get("gains", [])
        if any(isinstance(g.get(m), dict) and "by_seed" in g[m] and "verdict" not in g[m] for m in ALL_METRICS)
    ]
    annotate_gains(missing, ALL_METRICS)
    return summary


def _labels(inputs: Sequence[CompareInput]) -> None:
    """Data sets that appear twice (two compares of one data set) are told apart by their directory."""
    seen = Counter(item.label for item in inputs)
    for item in inputs:
        if seen[item.label] > 1:
            item.label = f"{item.label} ({item.directory.name})"


def row_types(
    entries: Sequence[Mapping[str, Any]], n_anomalies: Sequence[int] | None = None
) -> set[tuple[str, int, str]]:
    """(setting, M, seen) rows of one compare: general rows, and per hard M the mean over types when present.

    ``n_anomalies``: keep only these M (None: every M the compare ran).
    """
    keys = {
        (e["setting"], e["n_anomalies"], e["seen_type"])
        for e in entries
        if n_anomalies is None or e["n_anomalies"] in n_anomalies
    }
    with_mean = {(s, m) for s, m, t in keys if s == "hard" and t == MEAN_TYPE}
    return {(s, m, t) for s, m, t in keys if s != "hard" or (s, m) not in with_mean or t == MEAN_TYPE}


def method_label(model: str, variant: str) -> str:
    """The name of a method in ranks: ``k-NN`` for the label-free reference, else its table label."""
    return "k-NN" if variant == KNN and model == KNN else variant_label(model, variant)


Collected = tuple[list[RowKey], dict[RowKey, dict[str, float]], dict[tuple[str, str], dict[RowKey, dict[str, Any]]]]


def collect(inputs: Sequence[CompareInput], metric: str, n_anomalies: Sequence[int] | None = None) -> Collected:
    """Rows, each row's method means, and each gain pair's per-row block (mean, interval, verdict)."""
    rows: list[RowKey] = []
    methods: dict[RowKey, dict[str, float]] = {}
    gains: dict[tuple[str, str], dict[RowKey, dict[str, Any]]] = {}
    for item in inputs:
        groups = item.summary.get("groups", [])
        chosen = row_types(groups, n_anomalies)
        for setting, m, seen in sorted(chosen, key=lambda k: (k[0] != "general", k[1], k[2])):
            key = (item.label, setting, m, seen)
            rows.append(key)
            methods[key] = {
                method_label(g["model"], g["variant"]): g[metric]["mean"]
                for g in groups
                if (g["setting"], g["n_anomalies"], g["seen_type"]) == (setting, m, seen)
                and (g.get(metric) or {}).get("mean") is not None
            }
        for g in item.summary.get("gains", []):
            where = (g["setting"], g["n_anomalies"], g["seen_type"])
            block = g.get(metric) or {}
            if where in chosen and block.get("mean") is not None:
                key = (item.label, *where)  # a named key: mypy misreads a starred tuple inside [] as 3.11 syntax
                gains.setdefault((g["model"], g["variant"]), {})[key] = block
    return rows, methods, gains


def row_name(key: RowKey) -> str:
    label, setting, m, seen = key
    where = f"{setting} M={m}" + (f" {seen}" if setting == "hard" else "")
    return f"{label}, {where}"


def pair_summary(model: str, variant: str, by_row: Mapping[RowKey, Mapping[str, Any]]) -> dict[str, Any]:
    """Across rows: the mean row gain with its interval, Wilcoxon, and win / tie / loss of the row verdicts."""
    means = [float(b["mean"]) for b in by_row.values()]
    verdicts = [b.get("verdict", NO_EFFECT) for b in by_row.values()]
    return {
        "model": model,
        "variant": variant,
        "label": gain_label(model, variant),
        "rows": len(by_row),
        "over_rows": paired_interval(means),
        "wilcoxon": wilcoxon_test(means),
        **counts(verdicts),
        "by_row": [
            {
                "row": row_name(key),
                "dataset": key[0],
                "setting": key[1],
                "n_anomalies": key[2],
                "seen_type": key[3],
                **{k: block.get(k) for k in ("mean", "n", "ci_low", "ci_high", "verdict", "mde", "seeds_needed")},
            }
            for key, block in by_row.items()
        ],
    }


def rank_methods(rows: Sequence[RowKey], methods: Mapping[RowKey, Mapping[str, float]]) -> dict[str, Any]:
    """Friedman + Nemenyi over the methods present on every row (needs >= 3 of them and >= 2 rows)."""
    common = [name for name in methods[rows[0]] if all(name in methods[r] for r in rows)] if rows else []
    out: dict[str, Any] = {"methods": common, "rows": len(rows)}
    if len(common) < 3 or len(rows) < 2:
        out["note"] = (
            f"ranks need >= 3 methods on every row and >= 2 rows; found {len(common)} common methods "
            f"on {len(rows)} rows"
        )
        return out
    table = np.asarray([[methods[r][name] for name in common] for r in rows])
    out.update(friedman_nemenyi(common, table))
    out["table"] = [{"row": row_name(r), **{name: methods[r][name] for name in common}} for r in rows]
    return out


def combine(
    directories: Sequence[str | Path], metric: str = "auc_roc", n_anomalies: Sequence[int] | None = None
) -> dict[str, Any]:
    """Read the compares and build the report's summary (nothing written); ``n_anomalies`` keeps only those M."""
    if not directories:
        raise ReportInputError("no compare directories given; pass one or more `ahl compare --output` directories")
    inputs = [load_compare(d) for d in directories]
    _labels(inputs)
    rows, methods, gains = collect(inputs, metric, n_anomalies)
    if not rows:
        raise ReportInputError(
            f"none of {', '.join(str(i.directory) for i in inputs)} has a finished row with {metric}"
            + (f" at M = {', '.join(map(str, n_anomalies))}" if n_anomalies else "")
            + "; rerun those compares (their cells were all skipped or failed) or choose an M they ran"
        )
    models = [{g["model"] for g in i.summary.get("groups", []) if g["variant"] != KNN} for i in inputs]
    if len(inputs) > 1 and not set.intersection(*models):
        found = "; ".join(
            f"{i.directory}: {', '.join(sorted(m)) or 'none'}" for i, m in zip(inputs, models, strict=True)
        )
        raise ReportInputError(
            f"the compare directories have no model in common ({found}), so no gain or rank can be compared across "
            "them; run them with the same --models (e.g. --models devnet,dra) to combine them"
        )
    pairs = [pair_summary(model, variant, by_row) for (model, variant), by_row in gains.items()]
    order = {variant: i for i, variant in enumerate(VARIANT_ORDER)}
    pairs.sort(key=lambda p: (p["model"], order.get(p["variant"], len(order)), p["variant"]))
    return {
        "format": FORMAT,
        "metric": metric,
        "inputs": [{"directory": str(i.directory), "dataset": i.label} for i in inputs],
        "rows": [row_name(r) for r in rows],
        "pairs": pairs,
        "ranks": rank_methods(rows, methods),
    }
