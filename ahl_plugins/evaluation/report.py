"""What a compare writes for people: ``summary.json``, ``summary.md`` and the console table.

The numbers come from :mod:`.summary` (rows -> statistics and paired gains),
the layout from :mod:`.paper_tables` (the paper's tables) and
:mod:`.gain_tables` (each gain's interval, verdict, MDE and DeLong per seed);
this module only puts them together and writes the files. The names other
code has long imported from here (``fmt``, ``stats``, ``render``,
``summarise``, ...) are re-exported so those imports keep working.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ahl_plugins.atomic import atomic_write_text
from ahl_plugins.evaluation.cell_delong import add_delong
from ahl_plugins.evaluation.gain_tables import DELONG_EXPLAINED, EXPLAINED, NOISE_EXPLAINED, gain_sections, verdict_line
from ahl_plugins.evaluation.paper_tables import paper_tables, pixel_type_tables, times_table
from ahl_plugins.evaluation.significance import describe
from ahl_plugins.evaluation.summary import (
    ALL_METRICS,
    MEAN_TYPE,
    METRICS,
    PIXEL_METRICS,
    SUMMARY_JSON,
    SUMMARY_MD,
    chance_beyond_one_std,
    metric_present,
    skipped_cells,
    stats,
    summarise,
)
from ahl_plugins.evaluation.tables import METRIC_NAMES, fmt, render, variant_label

__all__ = [
    "ALL_METRICS",
    "MEAN_TYPE",
    "METRICS",
    "METRIC_NAMES",
    "PIXEL_METRICS",
    "SUMMARY_JSON",
    "SUMMARY_MD",
    "chance_beyond_one_std",
    "fmt",
    "format_table",
    "markdown_report",
    "paper_tables",
    "pixel_type_tables",
    "render",
    "skipped_cells",
    "stats",
    "summarise",
    "times_table",
    "variant_label",
    "write_summary",
]


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(str(s) for s in seeds)


def format_table(summary: Mapping[str, Any], metrics: Sequence[str] = ALL_METRICS) -> str:
    """The plain-text report printed at the end of a compare."""
    parts = []
    for metric in metrics:
        if metric_present(summary, metric):
            parts += [f"{title}\n{table}" for title, table in paper_tables(summary, metric)]
    parts += [f"{title}\n{table}" for title, table in pixel_type_tables(summary)]
    parts += [f"{title}\n{table}" for title, table in gain_sections(summary, metrics)]
    if summary.get("times"):
        parts.append(
            "Times per cell (seconds; fit includes feature extraction, cached after the first)\n" + times_table(summary)
        )
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


def markdown_report(summary: Mapping[str, Any]) -> str:
    """``summary.md``: the paper's tables, the paired gains with their verdicts, times and skipped cells."""
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
        if metric_present(summary, metric):
            for title, table in paper_tables(summary, metric, markdown=True):
                lines += [f"## {title}", "", table, ""]
    for title, table in pixel_type_tables(summary, markdown=True):
        lines += [
            f"## {title}",
            "",
            "Each type: its test images plus all test normals (maps at <= 256 px).",
            "",
            table,
            "",
        ]
    sections = gain_sections(summary, ALL_METRICS, markdown=True)
    if sections:
        lines += ["## Paired gains: intervals and verdicts", "", f"{EXPLAINED} {DELONG_EXPLAINED}", ""]
        tally = verdict_line(summary)
        if tally:
            lines += [f"{tally.replace('Verdicts by row', 'AUC-ROC verdicts by row')}", ""]
        if any("Training noise" in title for title, _ in sections):
            lines += [NOISE_EXPLAINED, ""]
        lines += [line for title, table in sections for line in (f"### {title}", "", table, "")]
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
