"""Why the labelled rows stay below the PatchCore-class reference on images, head by head (``docs/labels_on_images.md``).

Reads rows other benchmarks wrote; fits nothing:

- ``benchmarks/results/reference_rows/`` and the image compare runs: the test-split gap (``results_references``);
- ``benchmarks/results/dra_patch_head/``: DRA and AHL(DRA), pooled and patch distance head, on validation cases
  carved from training data (Magnetic Tile and ELPV, general), with every head's validation AUROC and, for the
  later fits, the calibrated head scores themselves;
- ``benchmarks/results/image_references/``: the PatchCore-class reference on the same carved cases and seeds.

Head combinations are studied on the stored calibrated scores (no refit): each is a different ``combine`` of the
same trained heads. Validation only: nothing here reads a test split, and the test-split table is measurement::

    python -m benchmarks.labels_on_images
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import PAGES, RESULTS, command, read_rows, write_page
from benchmarks.image_references import auroc

HEADS = ("normal", "seen", "pseudo", "residual", "distance")
LABELLED_HEADS = ("seen", "pseudo", "residual")
PATCHCORE_FORM = "patch/both/f0.1"  # the reference rows' form: both scales, coreset 10%
#: combinations of the trained heads: name -> (weights on the calibrated heads; normality enters negated)
COMBINATIONS = {
    "today (all five, equal)": {"normal": -1, "seen": 1, "pseudo": 1, "residual": 1, "distance": 1},
    "distance head alone": {"distance": 1},
    "labelled heads alone": {"normal": -1, "seen": 1, "pseudo": 1, "residual": 1},
    "without normality": {"seen": 1, "pseudo": 1, "residual": 1, "distance": 1},
    "distance + seen": {"seen": 1, "distance": 1},
    "distance ×3 + the rest": {"normal": -1, "seen": 1, "pseudo": 1, "residual": 1, "distance": 3},
    "max(distance, seen)": ("max", ("distance", "seen")),
    "max(distance, seen, pseudo, residual)": ("max", ("distance", "seen", "pseudo", "residual")),
    "distance + labelled heads beyond 2 spreads": ("hinge", ("seen", "pseudo", "residual"), 2.0),
    "distance + labelled heads beyond 3 spreads": ("hinge", ("seen", "pseudo", "residual"), 3.0),
}


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" if values else "-"


def _paired(diffs: list[float], against_reference: bool = False) -> str:
    """Paired mean [95% CI] and verdict; ``against_reference``: a difference from PatchCore-class, not a gain,
    so the verdict reads above / below / not told apart."""
    from ahl_plugins.evaluation.significance import paired_interval
    from benchmarks.results_references import STANDING

    gain = paired_interval(diffs)
    if gain["ci_low"] is None:
        return f"{gain['mean']:+.3f} (n {gain['n']})" if gain["n"] else "-"
    verdict = STANDING[gain["verdict"]] if against_reference else gain["verdict"]
    return f"{gain['mean']:+.3f} [{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}] {verdict} (n {gain['n']})"


def patchcore_on_cases() -> dict[tuple[str, int], float]:
    """(case, seed) -> the PatchCore-class reference's validation AUROC on that carved case."""
    return {
        (r["case"], r["seed"]): r["auroc"]
        for r in read_rows(RESULTS / "image_references")
        if r.get("form") == PATCHCORE_FORM
    }


def head_table(rows: list[dict[str, Any]], patchcore: dict[tuple[str, int], float]) -> list[str]:
    """Per case and config: each head's validation AUROC (normality negated), the total, PatchCore on the same
    cases, and total − PatchCore paired per seed."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if "head_auc_roc" in r:
            by[(r["case"], r["config"])].append(r)
    lines = [
        "| case | config | seeds | "
        + " | ".join(HEADS)
        + " | total | PatchCore-class (same seeds) | total − PatchCore |",
        "|---|---|---|" + "---|" * (len(HEADS) + 3),
    ]
    for (case, config), found in sorted(by.items()):
        heads = [_mean([r["head_auc_roc"][h] for r in found if h in r["head_auc_roc"]]) for h in HEADS]
        mine = [(r["seed"], r["auc_roc"]) for r in found if (case, r["seed"]) in patchcore]
        lines.append(
            f"| {case} | {config} | {len(found)} | "
            + " | ".join(heads)
            + f" | {_mean([r['auc_roc'] for r in found])} | "
            f"{_mean([patchcore[(case, s)] for s, _ in mine])} | {_paired([v - patchcore[(case, s)] for s, v in mine], True)} |"
        )
    return lines


def combine(heads: dict[str, np.ndarray], weights: dict[str, float] | tuple[str, tuple[str, ...]]) -> np.ndarray:
    """A weighted sum of calibrated heads; ``("max", names)``: per sample the largest of those heads;
    ``("hinge", names, t)``: the distance head plus each named head only where it exceeds ``t`` spreads (a
    labelled head speaks only when it is sure; below that the label-free ranking stands)."""
    if isinstance(weights, tuple) and weights[0] == "hinge":
        return heads["distance"] + sum(np.maximum(heads[name] - weights[2], 0.0) for name in weights[1])
    if isinstance(weights, tuple):
        return np.max(np.stack([heads[name] for name in weights[1]]), axis=0)
    return sum(w * heads[name] for name, w in weights.items())


def spread_table(rows: list[dict[str, Any]]) -> list[str]:
    """Each head's spread (IQR / 1.349) on the validation normals, in units of its training-normal spread."""
    by: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if "calibrated_heads" not in r:
            continue
        labels = np.asarray(r["val_labels"])
        for name, values in r["calibrated_heads"].items():
            normals = np.asarray(values)[labels == 0]
            q1, q3 = np.quantile(normals, [0.25, 0.75])
            by[(r["case"], r["config"])][name].append(float((q3 - q1) / 1.349))
    lines = ["| case | config | fits | " + " | ".join(HEADS) + " |", "|---|---|---|" + "---|" * len(HEADS)]
    for (case, config), spreads in sorted(by.items()):
        n = max(len(v) for v in spreads.values())
        lines.append(f"| {case} | {config} | {n} | " + " | ".join(_mean(spreads.get(h, [])) for h in HEADS) + " |")
    return lines


def combination_table(rows: list[dict[str, Any]], patchcore: dict[tuple[str, int], float]) -> list[str]:
    """Each combination's validation AUROC per case and config, and its gain over today's combine, paired."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if "calibrated_heads" in r:
            by[(r["case"], r["config"])].append(r)
    lines = [
        "| case | config | combination | fits | validation AUROC | − today's combine | − PatchCore-class |",
        "|---|---|---|---|---|---|---|",
    ]
    today = COMBINATIONS["today (all five, equal)"]
    for (case, config), found in sorted(by.items()):
        for name, weights in COMBINATIONS.items():
            values, gains, gaps = [], [], []
            for r in found:
                heads = {h: np.asarray(v) for h, v in r["calibrated_heads"].items()}
                if any(h not in heads for h in (weights[1] if isinstance(weights, tuple) else weights)):
                    continue
                labels = np.asarray(r["val_labels"])
                value = auroc(labels, combine(heads, weights))
                values.append(value)
                gains.append(value - auroc(labels, combine(heads, today)))
                if (case, r["seed"]) in patchcore:
                    gaps.append(value - patchcore[(case, r["seed"])])
            if values:
                lines.append(
                    f"| {case} | {config} | {name} | {len(values)} | {_mean(values)} | "
                    f"{'-' if weights is today else _paired(gains)} | {_paired(gaps, True)} |"
                )
    return lines


def recalibrated(heads: dict[str, np.ndarray], labels: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Heads re-centred and re-scaled on half the validation normals (every other one), and the rest to score.

    What calibrating on normals the heads never trained on would give (a held-out calibration set), estimated
    without a refit: returns the re-calibrated heads and the mask of the samples left to evaluate on (the other
    half of the normals and every anomaly).
    """
    normals = np.flatnonzero(labels == 0)
    fit = np.zeros(len(labels), dtype=bool)
    fit[normals[::2]] = True
    out = {}
    for name, values in heads.items():
        q1, median, q3 = np.quantile(values[fit], [0.25, 0.5, 0.75])
        out[name] = (values - median) / max((q3 - q1) / 1.349, 1e-6)
    return out, ~fit


def recalibration_table(rows: list[dict[str, Any]]) -> list[str]:
    """Today's combine with the training-normal calibration vs re-calibrated on held-out normals, same samples."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if "calibrated_heads" in r:
            by[(r["case"], r["config"])].append(r)
    today = COMBINATIONS["today (all five, equal)"]
    lines = [
        "| case | config | fits | today's calibration | held-out calibration | held-out − today |",
        "|---|---|---|---|---|---|",
    ]
    for (case, config), found in sorted(by.items()):
        before, after = [], []
        for r in found:
            heads = {h: np.asarray(v) for h, v in r["calibrated_heads"].items()}
            labels = np.asarray(r["val_labels"])
            moved, keep = recalibrated(heads, labels)
            before.append(auroc(labels[keep], combine(heads, today)[keep]))
            after.append(auroc(labels[keep], combine(moved, today)[keep]))
        lines.append(
            f"| {case} | {config} | {len(found)} | {_mean(before)} | {_mean(after)} | "
            f"{_paired([a - b for a, b in zip(after, before, strict=True)])} |"
        )
    return lines


def pooled_statements(rows: list[dict[str, Any]], patchcore: dict[tuple[str, int], float]) -> list[str]:
    """Per config, pooled over both cases and every fit with stored heads: each combination − PatchCore-class
    and − today's combine, paired per fit; the page's conclusions quote these."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if "calibrated_heads" in r and (r["case"], r["seed"]) in patchcore:
            by[r["config"]].append(r)
    today = COMBINATIONS["today (all five, equal)"]
    lines = ["| config | combination | fits | − PatchCore-class | − today's combine |", "|---|---|---|---|---|"]
    for config, found in sorted(by.items()):
        for name, weights in COMBINATIONS.items():
            gaps, gains = [], []
            for r in found:
                heads = {h: np.asarray(v) for h, v in r["calibrated_heads"].items()}
                labels = np.asarray(r["val_labels"])
                value = auroc(labels, combine(heads, weights))
                gaps.append(value - patchcore[(r["case"], r["seed"])])
                gains.append(value - auroc(labels, combine(heads, today)))
            lines.append(
                f"| {config} | {name} | {len(found)} | {_paired(gaps, True)} | "
                f"{'-' if weights is today else _paired(gains)} |"
            )
    return lines


def _pooled(
    rows: list[dict[str, Any]], patchcore: dict[tuple[str, int], float], configs: tuple[str, ...], value
) -> dict[str, Any]:
    """Paired interval of ``value(heads, labels, patchcore_auroc)`` over every stored fit of ``configs``."""
    from ahl_plugins.evaluation.significance import paired_interval

    out = []
    for r in rows:
        if r["config"] in configs and "calibrated_heads" in r and (r["case"], r["seed"]) in patchcore:
            heads = {h: np.asarray(v) for h, v in r["calibrated_heads"].items()}
            out.append(value(heads, np.asarray(r["val_labels"]), patchcore[(r["case"], r["seed"])]))
    return paired_interval(out)


def _say(g: dict[str, Any]) -> str:
    if g["ci_low"] is None:
        return "not measured yet"
    return f"{g['mean']:+.3f} [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}] (n {g['n']} fits)"


def conclusions(rows: list[dict[str, Any]], patchcore: dict[tuple[str, int], float]) -> list[str]:
    """What the tables say, with the numbers they hold (patch-head fits of DRA and AHL(DRA), both cases)."""
    patch = ("dra_patch", "ahl_patch")
    today, alone = COMBINATIONS["today (all five, equal)"], COMBINATIONS["distance head alone"]
    hinge = COMBINATIONS["distance + labelled heads beyond 3 spreads"]
    score = lambda w: lambda h, y, pc: auroc(y, combine(h, w))  # noqa: E731 - one-line score of a combination
    minus_pc = lambda w: lambda h, y, pc: auroc(y, combine(h, w)) - pc  # noqa: E731
    labelled_only = _pooled(rows, patchcore, patch, score(COMBINATIONS["labelled heads alone"]))
    heads_val = {
        h: np.mean([r["head_auc_roc"][h] for r in rows if r["config"] in patch and "head_auc_roc" in r]) for h in HEADS
    }
    return [
        "## What the measurements say",
        "",
        f"- **The sum is below its best head.** On validation the labelled heads rank held-out anomalies at "
        f"{', '.join(f'{h} {heads_val[h]:.3f}' for h in ('seen', 'pseudo', 'residual'))} (mean AUROC of the patch-head "
        f"fits; normality negated {heads_val['normal']:.3f}), their calibrated sum without the distance head at "
        f"{labelled_only['mean']:.3f}, while the parameter-free patch distance head alone reaches "
        f"{heads_val['distance']:.3f}. Summed with equal weight, today's combine lands between them: "
        f"today − PatchCore-class {_say(_pooled(rows, patchcore, patch, minus_pc(today)))}, "
        f"distance head alone − today {_say(_pooled(rows, patchcore, patch, lambda h, y, pc: auroc(y, combine(h, alone)) - auroc(y, combine(h, today))))}.",
        "- **Not a calibration artefact.** Each head's spread on new normals is close to its training-normal spread "
        "(table above: ratios near 1), and re-calibrating on held-out normals does not lift the sum; the labelled "
        "heads are weak on anomalies they were not fitted to (their AUROC on the fitted part is near 1, "
        "`docs/benchmarks/dra_heads.md`: they memorise 5-10 anomalies on frozen features).",
        f"- **No combination of the trained heads beats PatchCore-class on validation.** Closest: the distance head "
        f"alone, − PatchCore-class {_say(_pooled(rows, patchcore, patch, minus_pc(alone)))}, and the distance head "
        f"with the labelled heads only beyond 3 of their spreads, − PatchCore-class "
        f"{_say(_pooled(rows, patchcore, patch, minus_pc(hinge)))} (− the distance head alone "
        f"{_say(_pooled(rows, patchcore, patch, lambda h, y, pc: auroc(y, combine(h, hinge)) - auroc(y, combine(h, alone))))}): "
        "the labels add nothing measurable on top of the label-free ranking here, and the distance head itself stays "
        "a little below PatchCore-class (it pools the top 10% of positions where PatchCore takes the maximum, over a "
        "memory built per fit from the fit part's normals only).",
        "",
        "## What would close it",
        "",
        "Measured above, not yet built as a default (each needs the 5-seed validation of both image families, DRA and "
        "AHL(DRA), before it may change one, and then the image compare runs again):",
        "",
        "1. **Let the label-free ranking stand unless a labelled head is sure** (a combine such as *distance + "
        "labelled heads beyond 3 spreads*): it recovers today's loss against the distance head and costs no refit, "
        "but on these cases it only ties the distance head; it is the safe form for the hard setting, where the "
        "labelled heads know one type (`docs/benchmarks/hidden_type_safety.md`).",
        "2. **Labelled heads that generalise past their 5-10 examples**: the paper's pipeline fine-tunes the backbone "
        "end to end at 448 px (`docs/results_finetune.md`; the GPU run it needs was not lent to this project yet), or "
        "heads trained on the residual of the label-free score (the loss offset by the fixed patch distance, so a "
        "head learns only what the normals do not already say). Neither is built.",
        "3. **The distance head as PatchCore scores**: max over positions and a memory from every training normal, "
        "which on these cases is worth the remaining 0.02-0.03.",
        "",
    ]


def page(args: argparse.Namespace) -> None:
    from benchmarks.results_references import image_references_section, image_runs

    rows = read_rows(RESULTS / "dra_patch_head")
    patchcore = patchcore_on_cases()
    lines = [
        "# Labels on images: where the labelled rows stand against the PatchCore-class reference, head by head",
        "",
        f"Made by `{command('labels_on_images', [])}` from rows other benchmarks wrote (it fits nothing): the test "
        "splits' gap from `docs/results.md`, then DRA's heads on validation cases carved from training data only "
        "(`benchmarks.dra_patch_head`: Magnetic Tile and ELPV, general setting, EfficientNet-Lite0 maps, 10 epochs, "
        "M = 5 labelled defects train and 5 validate; `benchmarks.image_references`: PatchCore-class on the same "
        "cases and seeds). Every choice below reads validation rows only.",
        "",
        *image_references_section(image_runs()),
        "## Each head on validation",
        "",
        "Validation AUROC of each trained head's raw score (normality negated), of the model's total, and of the "
        "PatchCore-class reference on the same carved cases; *total − PatchCore*: paired per seed, 95% interval.",
        "",
        *head_table(rows, patchcore),
        "",
        "## Why the sum loses what its best head has: spreads on new normals",
        "",
        "Each head's spread (IQR / 1.349) on the validation normals, in units of its spread on the training "
        "normals (where `calibrate` measured it). Calibration divides each head by its training-normal spread; a "
        "head that fitted those normals (the labelled heads were trained on them) spreads wider on new normals, so "
        "it weighs more in the sum than calibration meant, and its noise drowns the others. The parameter-free "
        "distance head leaves each sample's own patches out, so a training normal is scored as a new one would be.",
        "",
        *spread_table(rows),
        "",
        "## Other combinations of the same trained heads (validation, no refit)",
        "",
        "Each row re-combines the calibrated head scores a fit stored (fits made after the scores were kept; "
        "earlier fits have only per-head AUROCs). *− today's combine*: paired on the same fits.",
        "",
        *combination_table(rows, patchcore),
        "",
        "Pooled over both cases (Magnetic Tile and ELPV), every fit with stored heads, paired per fit:",
        "",
        *pooled_statements(rows, patchcore),
        "",
        "## Calibrated on normals the heads never saw (validation, no refit)",
        "",
        "Today's combine, with every head re-centred and re-scaled on every other validation normal (a stand-in "
        "for a held-out calibration set), scored on the remaining normals and every anomaly, against the same "
        "samples scored with today's training-normal calibration.",
        "",
        *recalibration_table(rows),
        "",
    ]
    write_page(args.page, lines + conclusions(rows, patchcore), machine=None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=PAGES.parent / "labels_on_images.md")
    page(parser.parse_args(argv))


if __name__ == "__main__":
    main()
