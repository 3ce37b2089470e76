"""Do map statistics learned from a few labels beat the label-free PatchCore-class score? (issue 30, item 3)

Validation cases carved from training data only (``benchmarks.image_references.image_cases``: Magnetic Tile and
ELPV, general setting, EfficientNet-Lite0 maps; 2/3 of the training normals and 5 labelled defects fit, the
other normals and 5 defects validate). On each case one PatchCore-class memory is fitted on the fit normals; the
fit normals are scored leave-one-out (their own patches left out), the labelled defects and the validation
images against the whole memory; the map-statistics classifier (``ahl_plugins.map_classifier``) is fitted once
per weight form, and every image-score form is evaluated on the same maps:

- ``patchcore``: the label-free floor (mean over scales of the calibrated max patch distance);
- ``learned/<weights>``: the classifier's score alone (SegAD-class);
- ``floor_learned/<weights>/o<offset>``: the floor plus the learned score's non-negative part beyond ``offset``
  spreads of the training normals (labels add evidence, never subtract).

One row per (case, seed, form); the page gives each form's paired gain over ``patchcore`` per family::

    nice -n 10 python -m benchmarks.map_statistics_validation --seeds 5 --threads 1

The rule (``docs/deviations.md``): a labelled form replaces the label-free score only where its gain's interval
is not below zero on any family and its mean over the families is the highest.
"""

from __future__ import annotations

import argparse
import time
from typing import Literal

import numpy as np
import torch

from ahl_plugins.evaluation.significance import paired_interval
from benchmarks.ahl_m1_fix import cell
from benchmarks.harness import (
    PAGES,
    RESULTS,
    SHARED_MACHINE,
    add_common_flags,
    comma_list,
    command,
    open_rows,
    write_page,
)
from benchmarks.image_references import EXTRACTOR, auroc, image_cases

WEIGHTS: tuple[Literal["free", "non_negative"], ...] = ("free", "non_negative")
OFFSETS = (0.0, 1.0, 2.0)
REFERENCE = "patchcore"


def case_rows(case) -> list[dict]:
    """Every form on one carved case (features from the shared feature cache)."""
    from ahl_plugins.evaluation.knn import build_extractor
    from ahl_plugins.evaluation.patchcore import PatchCoreOptions, PatchMemory
    from ahl_plugins.evaluation.patchcore_stats import calibrated_maps
    from ahl_plugins.features.cache import FeatureCache
    from ahl_plugins.features.map_statistics import robust_center_spread
    from ahl_plugins.features.pipeline import extract_features
    from ahl_plugins.map_classifier import MapStatisticsClassifier
    from ahl_plugins.map_scoring import MapStatisticsOptions, image_score

    started = time.perf_counter()
    extractor = build_extractor("dra", EXTRACTOR, "image")
    labels = np.asarray(case.y_fit)
    normals = [p for p, y in zip(case.x_fit, labels, strict=True) if y == 0]
    anomalies = [p for p, y in zip(case.x_fit, labels, strict=True) if y == 1]
    extract = {"cache": FeatureCache(), "batch_size": 32, "device": "cpu", "progress": False}
    normal_scales = extract_features(extractor, normals, **extract).scales
    anomaly_scales = extract_features(extractor, anomalies, **extract).scales
    val_scales = extract_features(extractor, case.x_val, **extract).scales
    memory = PatchMemory(PatchCoreOptions(seed=case.seed)).fit(normal_scales)
    normal_maps, normal_scores = calibrated_maps(
        memory, memory.select(normal_scales), owners=torch.arange(len(normals))
    )
    anomaly_maps, _ = calibrated_maps(memory, memory.select(anomaly_scales))
    val_maps, val_scores = calibrated_maps(memory, memory.select(val_scales))
    center, spread = robust_center_spread(normal_scores)
    floor = (val_scores - center) / spread
    fitted = time.perf_counter()
    y_val = np.asarray(case.y_val)
    rows = [{"form": REFERENCE, "auroc": auroc(y_val, floor.numpy())}]
    for weights in WEIGHTS:
        classifier = MapStatisticsClassifier(len(normal_maps)).fit(normal_maps, anomaly_maps, case.seed, 1.0, weights)
        learned = classifier.learned(classifier.logits(val_maps))
        rows.append({"form": f"learned/{weights}", "auroc": auroc(y_val, learned.numpy())})
        for offset in OFFSETS:
            scores = image_score("floor_learned", floor, learned, MapStatisticsOptions(offset=offset))
            rows.append({"form": f"floor_learned/{weights}/o{offset:g}", "auroc": auroc(y_val, scores.numpy())})
    seconds = {"memory_and_maps": fitted - started, "total": time.perf_counter() - started}
    return [{**row, "seconds": seconds} for row in rows]


def page_lines(rows: list[dict]) -> list[str]:
    by = {(r["case"], r["seed"], r["form"]): r["auroc"] for r in rows}
    cases = sorted({r["case"] for r in rows})
    forms = list(dict.fromkeys(r["form"] for r in rows))
    lines = [
        "# Map statistics against the label-free PatchCore-class score, on validation data (issue 30)",
        "",
        f"Generated by `{command('map_statistics_validation', ['--seeds 5', '--threads 1'])}`; do not edit by hand. "
        "Cases carved from the training part of the results' general split (Magnetic Tile, ELPV; "
        "EfficientNet-Lite0 maps): 2/3 of the training normals and 5 labelled defects fit, the rest validate. "
        "Cells: AUROC mean over seeds, and the paired gain over `patchcore` on the same case and seed, mean "
        "[95% paired t interval] verdict (n). Forms: the module docstring of `benchmarks/map_statistics_validation.py`.",
        "",
        "| form | " + " | ".join(cases) + " | " + " | ".join(f"{c}: − patchcore" for c in cases) + " | mean gain |",
        "|---|" + "---|" * (2 * len(cases) + 1),
    ]
    summary: dict[str, tuple[float, bool, bool]] = {}
    for form in forms:
        means, gains_cells, ok, above, family_means = [], [], True, False, []
        for case in cases:
            seeds = sorted(s for (c, s, f) in by if c == case and f == form)
            values = [by[(case, s, form)] for s in seeds]
            means.append(f"{np.mean(values):.3f}" if values else "-")
            gains = [by[(case, s, form)] - by[(case, s, REFERENCE)] for s in seeds if (case, s, REFERENCE) in by]
            if form == REFERENCE or len(gains) < 2:
                gains_cells.append("-")
                continue
            stats = paired_interval(gains)
            ok &= stats["ci_high"] >= 0
            above |= stats["ci_low"] > 0
            family_means.append(stats["mean"])
            gains_cells.append(
                f"{stats['mean']:+.3f} [{stats['ci_low']:+.3f}, {stats['ci_high']:+.3f}] {stats['verdict']} "
                f"(n {stats['n']})"
            )
        mean_gain = float(np.mean(family_means)) if family_means else float("nan")
        if family_means and len(family_means) == len(cases):
            summary[form] = (mean_gain, ok, above)
        lines.append(
            f"| {form} | " + " | ".join(means) + " | " + " | ".join(gains_cells) + f" | {mean_gain:+.3f} |"
            if family_means
            else f"| {form} | " + " | ".join(means) + " | " + " | ".join(gains_cells) + " | - |"
        )
    # a labelled form replaces the label-free score only with a detectable gain: its interval above zero on some
    # family and below zero on none
    detectable = {f: g for f, (g, ok, above) in summary.items() if ok and above}
    best = max(detectable, key=lambda f: detectable[f]) if detectable else None
    lines += [
        "",
        "The rule: a labelled form replaces the label-free score only with a detectable gain (its interval above "
        "zero on at least one family and below zero on none); among those, the highest mean gain. "
        + (
            f"**Chosen: `{best}`** (mean gain {detectable[best]:+.3f})."
            if best is not None
            else "**No labelled form has a detectable gain: the label-free score stays the reference, and the "
            "map-statistics option stays off by default.**"
        ),
        "",
        "Weights, non-negative − free, paired on the same case and seed (which form the option uses when asked):",
        "",
        "| form | " + " | ".join(cases) + " |",
        "|---|" + "---|" * len(cases),
    ]
    for form in ["learned"] + [f"floor_learned/{{}}/o{o:g}" for o in OFFSETS]:
        free, nonneg = form.format("free"), form.format("non_negative")
        if form == "learned":
            free, nonneg = "learned/free", "learned/non_negative"
        cells = []
        for case in cases:
            diffs = [
                by[(case, s, nonneg)] - by[(case, s, free)]
                for s in sorted({s for (c, s, _) in by if c == case})
                if (case, s, nonneg) in by and (case, s, free) in by
            ]
            cells.append(cell(diffs))
        lines.append(f"| {nonneg.replace('non_negative', '*')} | " + " | ".join(cells) + " |")
    lines.append("")
    seconds = [r["seconds"]["total"] for r in rows if r["form"] == REFERENCE]
    if seconds:
        lines += [f"One case (memory, maps, both classifiers, every form): {np.mean(seconds):.0f} s on average.", ""]
    return lines


def row_key(row: dict) -> tuple:
    return (row["case"], row["seed"], row["form"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--families", default="mt,elpv")
    add_common_flags(parser, results=RESULTS / "map_statistics_validation", page=PAGES / "map_statistics_validation.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = open_rows(args, row_key)
    if not args.report_only:
        for case in image_cases(args.seeds, comma_list(args.families)):
            if (case.name, case.seed, REFERENCE) in rows:
                continue
            for row in case_rows(case):
                rows.add({"case": case.name, "seed": case.seed, **row})
            print(f"{case.name} s{case.seed}: done", flush=True)
    ordered = sorted(rows.by_key.values(), key=lambda r: (r["case"], r["seed"]))
    write_page(args.page, page_lines(ordered), machine=SHARED_MACHINE)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
