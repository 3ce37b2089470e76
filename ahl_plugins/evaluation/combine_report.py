"""What ``ahl report`` writes: ``summary.json``, ``summary.md``, ``plots/`` and ``index.html``.

The numbers come from :func:`.combine.combine`; this module only lays them
out: a table per model pair over data sets, the row-by-row gains, the ranks,
a forest plot of every row's gain and the critical-difference diagram.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ahl_plugins.atomic import atomic_write_text
from ahl_plugins.evaluation.combine import combine
from ahl_plugins.evaluation.forest import ForestLine, cd_diagram, forest_plot
from ahl_plugins.evaluation.gain_tables import EXPLAINED
from ahl_plugins.evaluation.html_index import INDEX_FILE, write_index
from ahl_plugins.evaluation.significance import NO_EFFECT
from ahl_plugins.evaluation.summary import SUMMARY_JSON, SUMMARY_MD
from ahl_plugins.evaluation.tables import METRIC_NAMES, interval, render, signed


def _p(value: float | None) -> str:
    return "-" if value is None else (f"{value:.3f}" if value >= 0.001 else f"{value:.1e}")


def pairs_table(report: Mapping[str, Any]) -> str:
    rows = []
    for pair in report["pairs"]:
        over = pair["over_rows"]
        rows.append(
            [
                pair["label"],
                str(pair["rows"]),
                signed(over["mean"]),
                interval(over),
                over["verdict"],
                _p(pair["wilcoxon"]["p"]),
                f"{pair['wins']} / {pair['ties']} / {pair['losses']}",
            ]
        )
    headers = [
        "gain",
        "rows",
        "mean over rows",
        "95% CI over rows",
        "verdict over rows",
        "Wilcoxon p",
        "rows helps / no detectable effect / hurts",
    ]
    return render(headers, rows, markdown=True)


def row_table(pair: Mapping[str, Any]) -> str:
    rows = [
        [
            r["row"],
            signed(r["mean"]),
            interval(r),
            r.get("verdict") or NO_EFFECT,
            str(r.get("n") or 0),
            "-" if r.get("mde") is None else f"{r['mde']:.3f}",
            "-" if r.get("seeds_needed") is None else str(r["seeds_needed"]),
        ]
        for r in pair["by_row"]
    ]
    return render(
        ["row", "gain", "95% CI", "verdict", "seeds", "MDE (80% power)", "seeds for ±0.01"], rows, markdown=True
    )


def ranks_section(ranks: Mapping[str, Any]) -> list[str]:
    if "average_ranks" not in ranks:
        return [ranks.get("note", "no ranks"), ""]
    order = sorted(ranks["average_ranks"], key=lambda n: ranks["average_ranks"][n])
    table = render(
        ["method", "average rank (1 = best)"], [[n, f"{ranks['average_ranks'][n]:.2f}"] for n in order], markdown=True
    )
    friedman = ranks["friedman"]
    cliques = "; ".join(", ".join(c) for c in ranks["cliques"]) or "none: every pair differs"
    return [
        f"{len(order)} methods on {ranks['n_datasets']} rows. Friedman χ² = {friedman['statistic']:.2f}, p = {_p(friedman['p'])}; "
        f"Nemenyi critical difference at α = {ranks['alpha']}: {ranks['critical_difference']:.2f} ranks "
        "(two methods whose average ranks differ by less are not told apart).",
        "",
        table,
        "",
        f"Groups not told apart: {cliques}.",
        "",
    ]


def markdown(report: Mapping[str, Any]) -> str:
    metric = METRIC_NAMES.get(report["metric"], report["metric"])
    lines = [f"# Report: {metric} over {len(report['rows'])} rows from {len(report['inputs'])} compares", ""]
    lines += [f"- {item['dataset']}: `{item['directory']}`" for item in report["inputs"]]
    lines += [
        "",
        "## Gains across data sets",
        "",
        "Each row is one data set × setting × M (hard setting: the mean over seen types). *mean over rows* and its "
        "95% t interval treat each row's gain as one observation; *Wilcoxon p* is the two-sided signed-rank test "
        "over rows; the counts are the rows' own verdicts (a tie is *no detectable effect*).",
        "",
        pairs_table(report),
        "",
        "## Ranks",
        "",
        *ranks_section(report["ranks"]),
        "## Gains per row",
        "",
        EXPLAINED,
        "",
    ]
    for pair in report["pairs"]:
        lines += [f"### {pair['label']}", "", row_table(pair), ""]
    return "\n".join(lines)


def write_plots(report: Mapping[str, Any], directory: Path) -> list[Path]:
    """The report's pictures: a forest plot of every row's gain and the means over rows, and the CD diagram."""
    directory.mkdir(parents=True, exist_ok=True)
    metric, name = report["metric"], METRIC_NAMES.get(report["metric"], report["metric"])
    written = []
    lines = [
        ForestLine(
            f"{pair['label']}: {r['row']} (n={r.get('n') or 0})",
            r["mean"],
            r.get("ci_low"),
            r.get("ci_high"),
            r.get("verdict") or NO_EFFECT,
        )
        for pair in report["pairs"]
        for r in pair["by_row"]
    ]
    lines += [
        ForestLine(
            f"{pair['label']}: mean over {pair['rows']} rows",
            pair["over_rows"]["mean"],
            pair["over_rows"]["ci_low"],
            pair["over_rows"]["ci_high"],
            pair["over_rows"]["verdict"],
        )
        for pair in report["pairs"]
        if pair["over_rows"]["mean"] is not None
    ]
    if lines:
        title = f"Paired gains in {name} per row and over rows (95% intervals)"
        written.append(forest_plot(lines, directory / f"forest_{metric}.png", title, f"gain in {name}"))
    cd = cd_plot(report, directory / f"cd_{metric}.png")
    return written + ([cd] if cd else [])


def cd_plot(report: Mapping[str, Any], path: Path) -> Path | None:
    """The critical-difference diagram of a report's ranks at ``path``; None when there are no ranks."""
    ranks = report["ranks"]
    if "average_ranks" not in ranks:
        return None
    name = METRIC_NAMES.get(report["metric"], report["metric"])
    title = (
        f"{name}: average ranks over {ranks['n_datasets']} rows, Friedman p = {_p(ranks['friedman']['p'])}, "
        f"Nemenyi CD = {ranks['critical_difference']:.2f}"
    )
    return cd_diagram(ranks["average_ranks"], ranks["critical_difference"], ranks["cliques"], path, title)


def write_report(
    directories: Sequence[str | Path], output: str | Path, *, metric: str = "auc_roc", plots: bool = True
) -> dict[str, Any]:
    """Combine the compares into ``output``: summary.json, summary.md, plots/ and index.html; return the report."""
    report = combine(directories, metric)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    atomic_write_text(output / SUMMARY_JSON, json.dumps(report, indent=2) + "\n")
    atomic_write_text(output / SUMMARY_MD, text)
    written = write_plots(report, output / "plots") if plots else []
    links = []
    for item in report["inputs"]:
        page = Path(item["directory"]) / INDEX_FILE
        target = page if page.is_file() else Path(item["directory"]) / "summary.md"
        links.append((f"compare: {item['dataset']} ({os.path.relpath(item['directory'], output)})", target))
    links += [(name, output / name) for name in (SUMMARY_MD, SUMMARY_JSON)]
    title = f"Report over {len(report['inputs'])} compares"
    write_index(output, title, text, written, links, lead=("Gains across data sets", "Ranks"))
    report["plots"] = [str(p) for p in written]
    return report
