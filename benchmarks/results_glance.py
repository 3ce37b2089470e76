"""The top of ``docs/results.md``: per M, AHL's gain on every data set with its interval and verdict, and pictures.

A row's gain is read by its 95% paired interval over seeds (:mod:`ahl_plugins.evaluation.significance`):
*helps* / *hurts* when the interval excludes zero, else *no detectable effect*, with the minimum
detectable effect saying how small a gain those seeds could have seen. Across data sets the same rows
go through ``ahl report``'s combine (mean over rows, Wilcoxon, Friedman + Nemenyi ranks), and the page
shows the library's own forest plot and critical-difference diagram of them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ahl_plugins.evaluation.combine import combine
from ahl_plugins.evaluation.combine_report import cd_plot, pairs_table, ranks_section
from ahl_plugins.evaluation.forest import ForestLine, forest_plot
from ahl_plugins.evaluation.significance import (
    HELPS,
    HURTS,
    LEVEL,
    NO_EFFECT,
    POWER,
    RESOLVE,
)
from ahl_plugins.evaluation.summary import MEAN_TYPE
from ahl_plugins.evaluation.tables import gain_label, interval, signed
from benchmarks.compare_catalogue import Part

#: when AHL's current defaults took effect (issue 31: the M = 1 tasks, the guard and its tolerance 0): a run
#: created before it shows AHL as it was then, and the page marks its rows
AHL_DEFAULTS_SINCE = "2026-12-06T22:00:00+0000"
STALE_MARK = "†"


def run_created(directory: Path) -> str:
    """When the compare run in ``directory`` started (its ``compare.json``; ISO 8601 in UTC, so strings order as
    times); "" when unknown."""
    import json

    try:
        return str(json.loads((directory / "compare.json").read_text(encoding="utf-8")).get("created", ""))
    except (OSError, ValueError):
        return ""


@dataclass
class Run:
    """A finished compare of one catalogue part: where it is and its summary (gains with intervals)."""

    part: Part
    directory: Path
    summary: dict[str, Any]

    @property
    def label(self) -> str:
        return self.part.title.split(",")[0]

    @property
    def created(self) -> str:
        """When the compare started (:func:`run_created`)."""
        return run_created(self.directory)

    @property
    def stale(self) -> bool:
        """Whether its AHL rows predate AHL's current defaults (:data:`AHL_DEFAULTS_SINCE`)."""
        return self.created < AHL_DEFAULTS_SINCE


def headline_seen(entries: Sequence[dict[str, Any]], setting: str, m: int) -> str | None:
    """The row a setting shows at M = ``m``: general ``all``; hard the mean over seen types, else its one type."""
    seen = {e["seen_type"] for e in entries if e["setting"] == setting and e["n_anomalies"] == m}
    if not seen:
        return None
    if setting == "general":
        return "all" if "all" in seen else sorted(seen)[0]
    return MEAN_TYPE if MEAN_TYPE in seen else sorted(seen)[0]


def _find(entries: Sequence[dict[str, Any]], **where: Any) -> dict[str, Any] | None:
    return next((e for e in entries if all(e.get(k) == v for k, v in where.items())), None)


@dataclass
class GlanceRow:
    """One data set × setting at one M: AHL's AUC-ROC and its gain block (mean, interval, verdict, MDE) per model."""

    run: Run
    setting: str
    seen: str
    ahl: dict[str, float | None]
    gains: dict[str, dict[str, Any]]
    knn: float | None

    @property
    def where(self) -> str:
        if self.setting == "general":
            return "general"
        return f"hard ({'mean over types' if self.seen == MEAN_TYPE else 'seen ' + self.seen})"


def glance_rows(runs: Sequence[Run], models: Sequence[str], m: int) -> list[GlanceRow]:
    """Every headline row at M = ``m`` of the runs, in page order."""
    out = []
    for run in runs:
        groups, gains = run.summary["groups"], run.summary["gains"]
        for setting in ("general", "hard"):
            seen = headline_seen([g for g in gains if g["variant"] == "ahl"], setting, m)
            if seen is None:
                continue
            where = {"setting": setting, "n_anomalies": m, "seen_type": seen}
            ahl, blocks = {}, {}
            for model in models:
                group = _find(groups, model=model, variant="ahl", **where)
                gain = _find(gains, model=model, variant="ahl", **where)
                ahl[model] = (group or {}).get("auc_roc", {}).get("mean")
                if gain and (gain.get("auc_roc") or {}).get("mean") is not None:
                    blocks[model] = gain["auc_roc"]
            knn = _find(groups, model="knn", variant="knn", **where)  # the k-NN reference, not other label-free rows
            out.append(GlanceRow(run, setting, seen, ahl, blocks, (knn or {}).get("auc_roc", {}).get("mean")))
    return out


def _mean(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _verdict_cell(block: dict[str, Any]) -> str:
    mde = block.get("mde")
    return f"{block.get('verdict', NO_EFFECT)}" + ("" if mde is None else f" ({mde:.3f})")


def glance_table(rows: Sequence[GlanceRow], models: Sequence[str]) -> list[str]:
    """The at-a-glance Markdown table: per model AHL's AUC-ROC, its gain with the 95% interval, verdict (MDE)."""
    head = "| data | setting | " + " | ".join(f"AHL({m}) | gain [{LEVEL:.0%} CI] | verdict (MDE)" for m in models)
    lines = [head + " | k-NN |", "|---|---|" + "---|---|---|" * len(models) + "---|"]
    for row in rows:
        cells = []
        for model in models:
            block = row.gains.get(model)
            if block is None:
                cells += ["-", "-", "-"]
            else:
                cells += [_mean(row.ahl.get(model)), f"{signed(block['mean'])} {interval(block)}", _verdict_cell(block)]
        label = row.run.label + (f" {STALE_MARK}" if row.run.stale else "")
        lines.append(f"| {label} | {row.where} | " + " | ".join(cells) + f" | {_mean(row.knn)} |")
    return lines


def stale_note(rows: Sequence[GlanceRow], models: Sequence[str]) -> list[str]:
    """Under the tally: which rows predate AHL's current defaults, and the tally over the rows that do not."""
    stale = [row for row in rows if row.run.stale]
    if not stale:
        return []
    fresh = [row for row in rows if not row.run.stale]
    note = (
        f"{STALE_MARK} run before AHL's current defaults ({AHL_DEFAULTS_SINCE[:10]}: at M = 1 the anomaly and the "
        "pseudo anomalies in the query sets only, and at every M the guard with tolerance 0; docs/deviations.md): "
        f"{len(stale)} of {len(rows)} rows. Their AHL columns show AHL as it was; the commands that rerun them are in "
        "`benchmarks/results/compare/MANIFEST.md`."
    )
    lines = [note, ""]
    if fresh:
        lines += ["Over the rows run under the current defaults only: " + tally_line(tally(fresh, models)), ""]
    return lines


def tally(rows: Sequence[GlanceRow], models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per model: rows reading helps / hurts / no detectable effect, the mean gain and the seeds each row ran."""
    out = {}
    for model in models:
        blocks = [row.gains[model] for row in rows if model in row.gains]
        if blocks:
            verdicts = [b.get("verdict", NO_EFFECT) for b in blocks]
            out[model] = {
                HELPS: verdicts.count(HELPS),
                HURTS: verdicts.count(HURTS),
                NO_EFFECT: verdicts.count(NO_EFFECT),
                "rows": len(blocks),
                "mean": statistics.fmean(b["mean"] for b in blocks),
                "seeds": sorted({b.get("n", 0) for b in blocks}),
            }
    return out


def tally_line(counts: dict[str, dict[str, Any]]) -> str:
    """The sentence under the table, with what chance alone gives for a method with no effect anywhere."""
    if not counts:
        return ""
    parts = [
        f"AHL({model}) helps in {t[HELPS]} of {t['rows']} rows, hurts in {t[HURTS]} and has no detectable effect "
        f"in {t[NO_EFFECT]} (mean gain over the rows {t['mean']:+.3f})"
        for model, t in counts.items()
    ]
    rows = max(t["rows"] for t in counts.values())
    chance = (1 - LEVEL) / 2
    return (
        "Verdicts (AUC-ROC): " + "; ".join(parts) + f". For scale: a method with no effect at all reads *hurts* in "
        f"{chance:.1%} of rows by chance (and *helps* as often), about {chance * rows:.1f} of {rows} rows per model."
    )


def seeds_needed(rows: Sequence[GlanceRow], models: Sequence[str], families: dict[str, Sequence[str]]) -> list[str]:
    """Median over rows of the seeds that would bring the MDE to ±0.01, per model and family of data."""
    head = "| data | " + " | ".join(f"AHL({m}) − {m}: median (range) over rows" for m in models) + " |"
    lines = [head, "|---|" + "---|" * len(models)]
    for family, prefixes in families.items():
        cells = []
        for model in models:
            needed = [
                row.gains[model]["seeds_needed"]
                for row in rows
                if model in row.gains
                and row.gains[model].get("seeds_needed") is not None
                and row.run.part.name.startswith(tuple(prefixes))
            ]
            cells.append(
                f"{statistics.median(needed):.0f} ({min(needed)}-{max(needed)}, {len(needed)} rows)" if needed else "-"
            )
        if any(c != "-" for c in cells):
            lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return lines


def forest(rows: Sequence[GlanceRow], models: Sequence[str], path: Path, m: int) -> Path | None:
    """The library's forest plot of every at-a-glance gain (model by model, rows in page order)."""
    lines = [
        ForestLine(
            f"{gain_label(model, 'ahl')}: {row.run.label}, {row.where} (n={row.gains[model].get('n', 0)})",
            row.gains[model]["mean"],
            row.gains[model].get("ci_low"),
            row.gains[model].get("ci_high"),
            row.gains[model].get("verdict", NO_EFFECT),
        )
        for model in models
        for row in rows
        if model in row.gains
    ]
    if not lines:
        return None
    title = f"AHL's paired gain in AUC-ROC, M = {m}: mean and {LEVEL:.0%} interval over seeds"
    return forest_plot(lines, path, title, "gain in AUC-ROC (AHL − base)")


def across_data_sets(runs: Sequence[Run], m: int, cd_path: Path) -> tuple[list[str], Path | None]:
    """``ahl report``'s combine over the runs' compare directories at M = ``m``: its tables and the CD diagram."""
    report = combine([run.directory for run in runs], "auc_roc", n_anomalies=[m])
    lines = [
        f"The same {len(report['rows'])} rows combined as `ahl report` does (`ahl_plugins.evaluation.combine`): per "
        "gain the mean over rows with its t interval, the Wilcoxon signed-rank test over rows and the rows' own "
        "verdicts; then the methods run on every row, ranked per row (1 = best) with the Friedman test and "
        "Nemenyi's critical difference (Demšar 2006).",
        "",
        pairs_table(report),
        "",
        *ranks_section(report["ranks"]),
    ]
    return lines, cd_plot(report, cd_path)


EXPLAINED = (
    f"*gain*: AHL − base on the same split, mean over seeds, with its {LEVEL:.0%} paired t interval; *verdict*: "
    "*helps* / *hurts* when the interval lies above / below zero, else *no detectable effect* (not proof of no "
    f"effect); *MDE*: the smallest true gain a two-sided {1 - LEVEL:.0%} test at these seeds detects with "
    f"{POWER:.0%} power, from the observed spread. A user needing to resolve ±{RESOLVE} needs the seeds in *Seeds "
    "to resolve ±0.01* below."
)
