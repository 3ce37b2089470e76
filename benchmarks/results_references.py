"""``docs/results.md``'s image section: every labelled row against every label-free form, paired per seed.

The compare runs behind the page predate the ``knn[mean]`` and ``patchcore`` reference rows; those were
measured on exactly the same splits by ``benchmarks.reference_rows`` (rows in
``benchmarks/results/reference_rows/``). This joins the two per (data set, setting, seed), so the best labelled
row is compared with the strongest label-free one, not the weakest, and the difference is read as a paired
interval with its verdict.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ahl_plugins.evaluation.significance import paired_interval
from benchmarks.harness import RESULTS, read_rows
from benchmarks.residual_patch_test import rows_under_defaults
from benchmarks.results_glance import Run, run_created

REFERENCE_ROWS = RESULTS / "reference_rows"
#: data key of the reference rows -> the compare parts (M = 10) that hold the labelled rows
IMAGE_PARTS = {"mt": ("mt_general", "mt_hard"), "elpv": ("elpv",)}
REFERENCES = {"knn-kth": "5-NN k-th", "knn-mean": "5-NN mean", "patchcore": "PatchCore-class"}
LABELLED = {
    "devnet/base": "DevNet",
    "devnet/ahl": "AHL(DevNet)",
    "dra/base": "DRA",
    "dra/ahl": "AHL(DRA)",
    "dra_patch/base": "DRA, patch head",
    "dra_patch/ahl": "AHL(DRA), patch head",
    "residual_patch/base": "residual_patch",
    "residual_patch/ahl": "AHL(residual_patch)",
}
#: data key -> compare directory prefix of DRA run with ``-o distance_form=patch`` (the default since
#: :data:`DRA_PATCH_SINCE`; the catalogue's first image runs predate it): shown as the ``dra_patch`` rows
PATCH_HEAD_RUNS = {"mt": "mt_general_dra_patch", "elpv": "elpv_dra_patch"}
#: data key -> compare directory prefix of ``ahl compare --models residual_patch`` (base and AHL, M = 10 and 1):
#: the AHL(residual_patch) rows (issue 30); the base rows come from ``benchmarks.residual_patch_test``
RESIDUAL_PATCH_RUNS = {"mt": "mt_general_residual_patch", "elpv": "elpv_residual_patch"}
#: when DRA's distance head on maps became the patch form by default (commit 809420e): a compare run created since
#: then without ``distance_form`` among its options ran DRA with the patch head
DRA_PATCH_SINCE = "2026-12-03T20:26:37+0000"
#: when the residual patch model's floor became the PatchCore-class reference's own draw (commit 18ef2e3): its
#: base rows are rerun under it; an AHL(residual_patch) run from before is shown marked, beside no base column
RESIDUAL_FLOOR_SINCE = "2026-12-07T07:05:00+0000"
FLOOR_MARK = "‡"
HEADLINE_M = 10
#: data key -> the name the pages give it
DATA_NAMES = {"mt": "Magnetic Tile", "elpv": "ELPV"}
#: a difference between two detectors is not a gain: its verdict read as where the first one stands
STANDING = {"helps": "above", "hurts": "below", "no detectable effect": "not told apart"}


def _per_seed(cells: list[tuple[str, int, float]]) -> dict[int, float]:
    """``(seen type, seed, auc)`` -> per seed with every seen type present: the mean over the seen types."""
    types = {seen for seen, _, _ in cells}
    by_seed: dict[int, dict[str, float]] = defaultdict(dict)
    for seen, seed, value in cells:
        by_seed[seed][seen] = value
    return {seed: float(np.mean(list(v.values()))) for seed, v in sorted(by_seed.items()) if set(v) == types}


def _cells(directory: Path, model_key: dict[str, str]) -> dict[tuple[str, str], dict[int, float]]:
    """(setting, row) -> seed -> AUC-ROC (hard: mean over seen types) of one compare directory's results.csv."""
    cells: dict[tuple[str, str], list[tuple[str, int, float]]] = defaultdict(list)
    with (directory / "results.csv").open() as handle:
        for row in csv.DictReader(handle):
            key = f"{model_key.get(row['model'], row['model'])}/{row['variant']}"
            if row["status"] != "ok" or int(row["n_anomalies"]) != HEADLINE_M or key not in LABELLED:
                continue
            cells[(row["setting"], key)].append((row["seen_type"], int(row["seed"]), float(row["auc_roc"])))
    return {k: _per_seed(found) for k, found in cells.items()}


def _newest(runs_dir: Path | None, prefix: str) -> list[Path]:
    """The last by name of the compare directories ``<prefix>-s*`` under ``runs_dir`` holding results: none or one."""
    found = runs_dir.glob(f"{prefix}-s*") if runs_dir else []
    return sorted(d for d in found if (d / "results.csv").is_file())[-1:]


def ahl_gain_lines(runs_dir: Path | None = RESULTS / "compare", model: str = "residual_patch") -> list[str]:
    """AHL(model) − model per data, setting and M, from the compare runs of :data:`RESIDUAL_PATCH_RUNS`: the
    paired gain with its interval and verdict, and how often AHL's guard kept the base model."""
    lines = []
    for data, prefix in RESIDUAL_PATCH_RUNS.items():
        for directory in _newest(runs_dir, prefix):
            summary = json.loads((directory / "summary.json").read_text())
            with (directory / "results.csv").open() as handle:
                cells = [r for r in csv.DictReader(handle) if r["model"] == model and r["variant"] == "ahl"]
            for gain in (g for g in summary["gains"] if g["model"] == model and g["variant"] == "ahl"):
                auc = gain["auc_roc"]
                if auc.get("ci_low") is None:
                    continue
                fits = [
                    r
                    for r in cells
                    if r["setting"] == gain["setting"]
                    and int(r["n_anomalies"]) == gain["n_anomalies"]
                    and r["seen_type"] == gain["seen_type"]
                ]
                kept = sum(r.get("ahl_guard", "").startswith("base") for r in fits)
                name = DATA_NAMES.get(data, data)
                mark = f" {FLOOR_MARK}" if run_created(directory) < RESIDUAL_FLOOR_SINCE else ""
                lines.append(
                    f"| {name} | {gain['setting']} | {gain['n_anomalies']} | {auc['mean']:+.3f} "
                    f"[{auc['ci_low']:+.3f}, {auc['ci_high']:+.3f}] | {auc['verdict']} (n {auc['n']}) | "
                    f"{kept} of {len(fits)} | `{directory.name}`{mark} |"
                )
    if not lines:
        return []
    return [
        f"**AHL({model}) − {model}**, image AUROC paired per seed (the compare run's own base and AHL cells; "
        "*guard kept the base*: the fits where AHL's held-out evidence did not favour its unified model, "
        f"`docs/when_ahl_hurts.md`; {FLOOR_MARK}: run before the floor became the PatchCore-class reference's own "
        f"draw ({RESIDUAL_FLOOR_SINCE[:10]}), both cells under the earlier floor):",
        "",
        "| data | setting | M | AHL − base [95% CI] | verdict | guard kept the base | run |",
        "|---|---|---|---|---|---|---|",
        *lines,
        "",
    ]


def labelled_cells(
    runs: list[Run], runs_dir: Path | None = None, residual_rows: Path | None = None
) -> dict[tuple[str, str], dict[str, dict[int, float]]]:
    """(data, setting) -> row -> seed -> AUC-ROC (hard: mean over seen types) from the compare runs' cells, plus
    the patch-head DRA runs under ``runs_dir`` (:data:`PATCH_HEAD_RUNS`) and the residual patch model's rows in
    ``residual_rows`` (``benchmarks.residual_patch_test``, read under today's default image score)."""
    out: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(dict)
    for data, names in IMAGE_PARTS.items():
        for run in (r for r in runs if r.part.name in names):
            rename = {"dra": "dra_patch"} if run.created >= DRA_PATCH_SINCE else {}
            for (setting, key), values in _cells(run.directory, rename).items():
                out[(data, setting)][key] = values
    for data, prefix in PATCH_HEAD_RUNS.items():
        for directory in _newest(runs_dir, prefix):
            for (setting, key), values in _cells(directory, {"dra": "dra_patch"}).items():
                out[(data, setting)].setdefault(key, values)  # a catalogue run under today's defaults comes first
    for data, prefix in RESIDUAL_PATCH_RUNS.items():
        for directory in _newest(runs_dir, prefix):
            for (setting, key), values in _cells(directory, {}).items():
                if key == "residual_patch/ahl" and run_created(directory) >= RESIDUAL_FLOOR_SINCE:
                    out[(data, setting)][key] = values  # an earlier run's AHL cells pair with no base row shown
    residual: dict[tuple[str, str], list[tuple[str, int, float]]] = defaultdict(list)
    for r in rows_under_defaults(residual_rows) if residual_rows else []:
        residual[(r["data"], r["setting"])].append((r.get("seen_type", "all"), int(r["seed"]), float(r["auc_roc"])))
    for key, found_rows in residual.items():
        out[key]["residual_patch/base"] = _per_seed(found_rows)
    return out


def reference_cells(path: Path = REFERENCE_ROWS) -> dict[tuple[str, str], dict[str, dict[int, float]]]:
    """(data, setting) -> form -> seed -> AUC-ROC (hard: mean over seen types)."""
    grouped: dict[tuple[str, str, str], list[tuple[str, int, float]]] = defaultdict(list)
    for r in read_rows(path):
        grouped[(r["data"], r["setting"], r["form"])].append((r["seen_type"], r["seed"], r["auc_roc"]))
    out: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(dict)
    for (data, setting, form), found in grouped.items():
        out[(data, setting)][form] = _per_seed(found)
    return out


def image_runs(runs_dir: Path = RESULTS / "compare", seeds: int = 5) -> list[Run]:
    """The finished M = 10 image compare runs (the newest per part), as ``docs/results.md`` reads them."""
    from ahl_plugins.evaluation.combine import load_compare
    from benchmarks.compare_catalogue import compare_parts
    from benchmarks.harness import SHARED_DATA

    wanted = {name for names in IMAGE_PARTS.values() for name in names}
    runs = []
    for part in (p for parts in compare_parts(SHARED_DATA).values() for p in parts if p.name in wanted):
        found = sorted(
            (d for d in runs_dir.glob(f"{part.name}-s{seeds}*") if (d / "summary.json").is_file()),
            key=lambda d: (d / "summary.json").stat().st_mtime,
        )
        if found:
            runs.append(Run(part, found[-1], load_compare(found[-1]).summary))
    return runs


def _cell(values: dict[int, float]) -> str:
    if not values:
        return "-"
    v = list(values.values())
    return f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f} (n {len(v)})"


def _best_by_mean(rows: dict[str, dict[int, float]]) -> str:
    """The row (model or form) with the highest mean over its seeds."""
    return max(rows, key=lambda k: np.mean(list(rows[k].values())))


def comparison(labelled: dict[str, dict[int, float]], references: dict[str, dict[int, float]]) -> dict[str, Any] | None:
    """The best labelled row minus the strongest label-free form (each the best by mean), paired on common seeds."""
    rows = {k: v for k, v in labelled.items() if v}
    refs = {k: v for k, v in references.items() if v}
    if not rows or not refs:
        return None
    best, strongest = _best_by_mean(rows), _best_by_mean(refs)
    seeds = sorted(set(rows[best]) & set(refs[strongest]))
    gain = paired_interval([rows[best][s] - refs[strongest][s] for s in seeds])
    return {"best": best, "strongest": strongest, **gain}


def dra_heads_note(labelled: dict[tuple[str, str], dict[str, dict[int, float]]], keys: list[tuple[str, str]]) -> str:
    """What the page's DRA columns are: the patch head, and the pooled one only while a run from before is shown."""
    patch = (
        '*patch head*: DRA with `distance_form="patch"`, the default on maps since 2026-12-03 (chosen on validation, '
        "`docs/deviations.md`)"
    )
    if not any(labelled[key].get(name) for key in keys for name in ("dra/base", "dra/ahl")):
        return patch + ": every image run here is from since; "
    return (
        "*DRA* / *AHL(DRA)*: the pooled distance head, the default until 2026-12-03, from runs that predate the "
        f"patch default; {patch}: the catalogue's runs since then, else `benchmarks/results/compare/"
        "<part>_dra_patch-s5-e10`; "
    )


def image_references_section(
    runs: list[Run],
    path: Path = REFERENCE_ROWS,
    runs_dir: Path | None = RESULTS / "compare",
    residual_rows: Path | None = RESULTS / "residual_patch_test",
) -> list[str]:
    """The section, or nothing when no reference rows or no image runs are on disk."""
    labelled, references = labelled_cells(runs, runs_dir, residual_rows), reference_cells(path)
    keys = sorted(k for k in labelled if k in references)
    if not keys:
        return []
    lines = [
        "## Images: every labelled row against every label-free form, M = 10",
        "",
        "Image AUROC, mean ± std over seeds (hard: each seed's mean over seen types first). The label-free rows "
        "were measured on exactly the splits of the compare runs above (`python -m benchmarks.reference_rows`, "
        "rows in `benchmarks/results/reference_rows/`; page `docs/benchmarks/reference_rows.md`): pooled 5-NN with "
        "the distance to the 5th neighbour (the *k-NN* column elsewhere on this page) and with the mean of the 5, "
        "and the PatchCore-class reference (nearest normal patch, coreset 10%; pixel metrics in "
        "`docs/results_pixel.md`). *best − strongest*: the best labelled row minus the strongest label-free form "
        "(each chosen by its mean here), paired per seed, with its 95% interval; *standing*: *above* / *below* when "
        "the interval excludes 0, else *not told apart*. Why DRA's labelled heads "
        "stay below the patch reference, head by head, and what closes the gap: `docs/labels_on_images.md`. "
        + dra_heads_note(labelled, keys)
        + "*residual_patch*: the built-in residual patch model with its defaults "
        "(`docs/benchmarks/residual_patch_test.md`, measured on the same splits; its floor is the PatchCore-class "
        "row's own score under the same seed, so residual_patch − PatchCore-class is what its labels add); a column "
        "no run fills is left "
        "out, `-`: not run for that row. A row unfinished when the page was written shows the seeds it has.",
        "",
    ]
    shown = [k for k in LABELLED if any(labelled[key].get(k) for key in keys)]
    lines += [
        "| data | setting | "
        + " | ".join(REFERENCES.values())
        + " | "
        + " | ".join(LABELLED[k] for k in shown)
        + " | best − strongest [95% CI] | standing |",
        "|---|---|" + "---|" * (len(REFERENCES) + len(shown) + 2),
    ]
    for data, setting in keys:
        refs, rows = references[(data, setting)], labelled[(data, setting)]
        cells = [_cell(refs.get(f, {})) for f in REFERENCES] + [_cell(rows.get(k, {})) for k in shown]
        found = comparison(rows, refs)
        if found is None or found["ci_low"] is None:
            tail = ["-", "-"]
        else:
            tail = [
                f"{LABELLED[found['best']]} − {REFERENCES[found['strongest']]}: {found['mean']:+.3f} "
                f"[{found['ci_low']:+.3f}, {found['ci_high']:+.3f}] (n {found['n']})",
                STANDING[found["verdict"]],
            ]
        name = DATA_NAMES.get(data, data)
        lines.append(f"| {name} | {setting} | " + " | ".join(cells + tail) + " |")
    return lines + ["", *ahl_gain_lines(runs_dir)]


def strongest_label_free(runs: list[Run], path: Path = REFERENCE_ROWS) -> dict[tuple[str, str], tuple[str, float]]:
    """(compare part name, setting) -> (form, mean AUC-ROC) of the strongest label-free form, for image parts."""
    references = reference_cells(path)
    out = {}
    for data, names in IMAGE_PARTS.items():
        for setting in ("general", "hard"):
            refs = {k: v for k, v in references.get((data, setting), {}).items() if v}
            if not refs:
                continue
            form = _best_by_mean(refs)
            for name in names:
                out[(name, setting)] = (REFERENCES[form], float(np.mean(list(refs[form].values()))))
    return out


def pixel_reference_section(
    model_rows: dict[str, dict[int, dict[str, float]]], path: Path = REFERENCE_ROWS
) -> list[str]:
    """``docs/results_pixel.md``'s label-free section: the reference rows' image and pixel metrics per data set and
    setting, and on Magnetic Tile's general splits each model minus PatchCore-class, paired per seed.

    ``model_rows``: model label -> seed -> ``{"image_auroc", "pixel_auroc", "pixel_aupro"}`` (general splits).
    """
    rows = read_rows(path)
    if not rows:
        return []
    metrics = (("auc_roc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pixel_aupro", "AUPRO"))
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        grouped[(r["data"], r["setting"], r["form"])].append(r)
    lines = [
        "## The label-free references on the same splits (no labels)",
        "",
        "Measured on exactly these splits by `python -m benchmarks.reference_rows` (rows in "
        "`benchmarks/results/reference_rows/`): the PatchCore-class reference (`ahl compare`'s `patchcore` row, "
        "`ahl_plugins/evaluation/patchcore.py`: nearest training-normal patch on the same EfficientNet-Lite0 maps, "
        "both scales, greedy coreset of 10% of the normals' patches seeded by the split seed, max over positions for "
        "the image score, its distance maps through the same map and pixel-metric code) and the pooled 5-NN forms "
        "(no maps). Mean ± std over seeds; hard: each seed's mean over seen types first. ELPV has no pixel masks. "
        "A reference reads no label, so its numbers do not depend on the epochs the models train.",
        "",
        "| data | setting | row | seeds | " + " | ".join(name for _, name in metrics) + " |",
        "|---|---|---|---|---|---|---|",
    ]
    for (data, setting, form), found in sorted(grouped.items()):
        seeds = sorted({r["seed"] for r in found})
        cells = []
        for key, _ in metrics:
            per_seed = [
                np.mean([r[key] for r in found if r["seed"] == s])
                for s in seeds
                if all(key in r for r in found if r["seed"] == s)
            ]
            cells.append(
                f"{np.mean(per_seed):.3f} ± {np.std(per_seed, ddof=1) if len(per_seed) > 1 else 0.0:.3f}"
                if per_seed
                else ""
            )
        name = DATA_NAMES.get(data, data)
        lines.append(
            f"| {name} | {setting} | {REFERENCES.get(form, form)} | {len(seeds)} | " + " | ".join(cells) + " |"
        )
    patch = {r["seed"]: r for r in grouped.get(("mt", "general", "patchcore"), [])}
    if model_rows and patch:
        lines += [
            "",
            "Each model minus PatchCore-class on Magnetic Tile's general splits, paired per seed "
            "(95% interval; *below* / *above* when it excludes 0):",
            "",
            "| model | " + " | ".join(name for _, name in metrics) + " |",
            "|---|---|---|---|",
        ]
        for label, by_seed in model_rows.items():
            cells = []
            for key, _ in metrics:
                mine = "image_auroc" if key == "auc_roc" else key
                diffs = [by_seed[s][mine] - patch[s][key] for s in sorted(by_seed) if s in patch and key in patch[s]]
                gain = paired_interval(diffs)
                cells.append(
                    "-"
                    if gain["ci_low"] is None
                    else f"{gain['mean']:+.3f} [{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}] {STANDING[gain['verdict']]}"
                )
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]
