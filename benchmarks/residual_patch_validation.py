"""Which image score should the residual patch model use, and does it beat the label-free floor? Validation cases
carved from training data only (Magnetic Tile and ELPV, general setting, EfficientNet-Lite0 maps, 10 epochs, M = 5
labelled defects train and 5 validate, as ``benchmarks.dra_patch_head``).

One fit per (config, case, seed) stores the validation samples' raw head scores and the fitted calibration, so
every image-score form (``image_score`` and ``evidence_offset``) is evaluated without refitting. The label-free
PatchCore-class reference and DRA with its patch head come from the rows ``benchmarks.image_references`` and
``benchmarks.dra_patch_head`` wrote on the very same carved cases and seeds::

    nice -n 10 python -m benchmarks.residual_patch_validation --seeds 5 --threads 1
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any, cast

import numpy as np
import torch

from benchmarks.harness import PAGES, RESULTS, add_common_flags, comma_list, command, open_rows, read_rows, write_page
from benchmarks.image_references import auroc, image_cases
from builtin_plugins.residual_patch import ImageScore

#: fits: the model's options per config (the scorer's image score is evaluated offline in every form)
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "segad_labels": {"statistics_pseudo": False},  # the classifier on normals + labelled anomalies only (SegAD)
    "pooled_floor": {"floor": "pooled_knn"},  # the floor is the pooled mean-of-5 k-NN score, not PatchCore-class
}
OPTIONS: dict[str, Any] = {"extractor": "efficientnet_lite0", "epochs": 10}
#: image-score forms evaluated offline: (name, image_score, evidence_offset)
FORMS: list[tuple[str, ImageScore, float]] = [
    ("floor", "floor", 0.0),
    ("statistics", "statistics", 0.0),
    ("evidence", "evidence", 0.0),
    ("floor+statistics", "floor_statistics", 0.0),
    ("floor+statistics>1", "floor_statistics", 1.0),
    ("floor+statistics>2", "floor_statistics", 2.0),
    ("floor+evidence", "floor_evidence", 0.0),
    ("floor+evidence>2", "floor_evidence", 2.0),
    ("floor+both", "floor_both", 0.0),
    ("floor+both>2", "floor_both", 2.0),
]


def fit_score(case, config: str) -> dict:
    from ahl_plugins.detector import OSADDetector
    from ahl_plugins.training.scoring import head_scores

    started = time.perf_counter()
    detector = OSADDetector("residual_patch", seed=case.seed, progress=False, **CONFIGS[config], **OPTIONS)
    detector.fit(case.x_fit, case.y_fit)
    fitted = time.perf_counter()
    features = detector.features(case.x_val)
    extracted = time.perf_counter()
    scorer = detector.scorer_
    assert scorer is not None
    heads = head_scores(scorer, features)
    scored = time.perf_counter()
    center = cast(torch.Tensor, scorer.head_center)
    spread = cast(torch.Tensor, scorer.head_scale)
    return {
        "fit_seconds": fitted - started,
        "score_seconds": scored - extracted,
        "n_val": len(case.y_val),
        "val_labels": [int(v) for v in case.y_val],
        "heads": {name: np.round(values, 6).tolist() for name, values in heads.items()},
        "head_center": center.tolist(),
        "head_scale": spread.tolist(),
    }


def form_scores(row: dict, image_score: ImageScore, offset: float) -> np.ndarray:
    """The image score ``image_score`` would give, from the stored heads (the scorer's own ``combine``)."""
    from ahl_plugins.contracts import FeatureSpec
    from builtin_plugins.residual_patch import ResidualPatchOptions
    from builtin_plugins.residual_patch.scorer import ResidualPatchScorer

    scorer = ResidualPatchScorer(
        FeatureSpec("map", (1,)), ResidualPatchOptions(image_score=image_score, evidence_offset=offset)
    )
    scorer.head_center.copy_(torch.tensor(row["head_center"]))
    scorer.head_scale.copy_(torch.tensor(row["head_scale"]))
    heads = {name: torch.tensor(values, dtype=torch.float64) for name, values in row["heads"].items()}
    return scorer.combine(heads).numpy()


def run(args: argparse.Namespace) -> None:
    rows = open_rows(args, key=lambda r: (r["config"], r["case"], r["seed"]))
    for case in sorted(image_cases(args.seeds, comma_list(args.families)), key=lambda c: (c.seed, c.name)):
        if case.seed < args.from_seed:
            continue
        for config in comma_list(args.configs):
            if (config, case.name, case.seed) in rows:
                continue
            result = fit_score(case, config)
            labels = np.asarray(result["val_labels"])
            aurocs = {name: auroc(labels, form_scores(result, s, o)) for name, s, o in FORMS}
            rows.add({"config": config, "case": case.name, "family": case.family, "seed": case.seed, **result})
            print(
                f"{config} {case.name} s{case.seed}: "
                + ", ".join(f"{k} {v:.3f}" for k, v in aurocs.items())
                + f" (fit {result['fit_seconds']:.0f} s)",
                flush=True,
            )


def reference_rows() -> dict[tuple[str, str], dict[int, float]]:
    """PatchCore-class and DRA (patch head) on the same carved cases: ``{(row name, case): {seed: AUROC}}``."""
    out: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in read_rows(RESULTS / "image_references"):
        if r["form"] == "patch/both/f0.1":
            out[("PatchCore-class", r["case"])][r["seed"]] = r["auroc"]
    for r in read_rows(RESULTS / "dra_patch_head"):
        if r["config"] == "dra_patch":
            out[("DRA, patch head", r["case"])][r["seed"]] = r["auc_roc"]
        if r["config"] == "ahl_patch":
            out[("AHL(DRA), patch head", r["case"])][r["seed"]] = r["auc_roc"]
    return out


def page(args: argparse.Namespace) -> None:
    from ahl_plugins.evaluation.significance import paired_interval

    rows = read_rows(args.results)
    by: dict[tuple[str, str], dict[int, float]] = reference_rows()
    for r in rows:
        labels = np.asarray(r["val_labels"])
        for name, score, offset in FORMS:
            by[(f"{r['config']}: {name}", r["case"])][r["seed"]] = auroc(labels, form_scores(r, score, offset))
    cases = sorted({r["case"] for r in rows})
    fitted_seeds = {case: {r["seed"] for r in rows if r["case"] == case} for case in cases}
    names = ["PatchCore-class", "DRA, patch head", "AHL(DRA), patch head"] + [
        f"{c}: {name}" for c in CONFIGS for name, _, _ in FORMS if any(r["config"] == c for r in rows)
    ]

    def interval(d: list[float]) -> str:
        g = paired_interval(d)
        if g["ci_low"] is None:
            return f"{g['mean']:+.3f} (n {g['n']})" if d else ""
        return f"{g['mean']:+.3f} [{g['ci_low']:+.3f}, {g['ci_high']:+.3f}] {g['verdict']} (n {g['n']})"

    def cell(values: dict[int, float]) -> str:
        v = list(values.values())
        return f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f} (n {len(v)})" if v else ""

    lines = [
        "# The residual patch model on image validation cases (training data only)",
        "",
        "Made by `" + command("residual_patch_validation", ["--seeds", str(args.seeds), "--threads", "1"]) + "`; "
        "rows in `benchmarks/results/residual_patch_validation/`. Cases carved from the training part of the results' "
        "general split (`benchmarks.validation_splits.carved_case`: 2/3 of the training normals fit, the other third "
        "and 5 of the 10 labelled defects validate; EfficientNet-Lite0 maps, 10 epochs; M = 5 labelled defects "
        "train). One fit per config, case and seed; every image-score form is the scorer's own `combine` on the "
        "stored heads (no refit). *floor*: the calibrated max nearest-normal-patch distance inside the model (the "
        "PatchCore-class score); *statistics*: the logistic classifier on the distance maps' statistics (SegAD-class); "
        "*evidence*: the per-position residual head, top-k MIL; *floor+X>t*: the floor plus the part of X beyond t "
        "calibrated spreads. Configs: *default* (the statistics classifier also learns from pseudo anomalies), "
        "*segad_labels* (normals and labelled defects only), *pooled_floor* (the floor is the pooled mean-of-5 k-NN score, "
        '`floor="pooled_knn"`, instead of PatchCore-class). PatchCore-class and DRA rows: '
        "`benchmarks/results/image_references/` and `benchmarks/results/dra_patch_head/`, same cases and seeds.",
        "",
        "## Validation AUROC, mean ± std over seeds",
        "",
        "| row | " + " | ".join(cases) + " |",
        "|---|" + "---|" * len(cases),
    ]
    for name in names:  # every row on the seeds this model was fitted on, so the means compare like with like
        cells = [cell({k: v for k, v in by.get((name, c), {}).items() if k in fitted_seeds[c]}) for c in cases]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Paired against PatchCore-class (same case and seed): mean [95% CI] verdict",
        "",
        "*helps* / *hurts*: the interval lies above / below zero; *both cases*: the pairs of both cases pooled.",
        "",
        "| row − PatchCore-class | " + " | ".join(cases) + " | both cases |",
        "|---|" + "---|" * (len(cases) + 1),
    ]
    reference = "PatchCore-class"
    for name in names[1:]:
        cells, pooled = [], []
        for case in cases:
            a, b = by.get((name, case), {}), by.get((reference, case), {})
            d = [a[s] - b[s] for s in sorted(set(a) & set(b))]
            pooled += d
            cells.append(interval(d))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {interval(pooled)} |")
    lines += [
        "",
        "## Paired against the model's own floor (same fit)",
        "",
        "| row − default: floor | " + " | ".join(cases) + " | both cases |",
        "|---|" + "---|" * (len(cases) + 1),
    ]
    for name in names[3:]:
        if name == "default: floor":
            continue
        cells, pooled = [], []
        for case in cases:
            a, b = by.get((name, case), {}), by.get(("default: floor", case), {})
            d = [a[s] - b[s] for s in sorted(set(a) & set(b))]
            pooled += d
            cells.append(interval(d))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {interval(pooled)} |")
    lines += decision_lines(by, cases)
    lines += cost_lines(rows, cases)
    write_page(args.page, lines + [""], machine="other jobs running beside it (fit seconds are indicative).")


def decision_lines(by: dict[tuple[str, str], dict[int, float]], cases: list[str]) -> list[str]:
    """What the defaults are, and the rows behind them (the choice itself is argued in docs/deviations.md)."""
    from builtin_plugins.residual_patch import ResidualPatchOptions

    defaults = ResidualPatchOptions()
    chosen = [n for n, s, o in FORMS if s == defaults.image_score and o == defaults.evidence_offset]
    lines = [
        "",
        "## The defaults",
        "",
        (
            f"`image_score={defaults.image_score!r}`, `evidence_offset={defaults.evidence_offset:g}`: the row "
            f"*default: {chosen[0] if chosen else '(not among the forms above)'}*."
        ),
    ]
    if chosen:
        for case in cases:
            a, b = by.get((f"default: {chosen[0]}", case), {}), by.get(("default: floor", case), {})
            d = [a[k] - b[k] for k in sorted(set(a) & set(b))]
            if d:
                lines.append(
                    f"- `{case}`: {np.mean(list(a.values())):.3f} against its floor {np.mean(list(b.values())):.3f}; "
                    f"per seed {', '.join(f'{v:+.3f}' for v in d)}"
                )
    return lines


def cost_lines(rows: list[dict], cases: list[str]) -> list[str]:
    """Median seconds per case: this model's fit and validation scoring beside DRA's pooled fit and the
    PatchCore-class reference's memory + scoring, each from its own benchmark's rows (other loads, indicative)."""
    cost: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        cost[(f"residual_patch ({r['config']}): fit", r["case"])].append(r["fit_seconds"])
        cost[(f"residual_patch ({r['config']}): scoring, images / s", r["case"])].append(
            r["n_val"] / max(r["score_seconds"], 1e-9)
        )
    for r in read_rows(RESULTS / "dra_patch_head"):
        if r["config"] == "dra_pooled" and "seconds" in r:
            cost[("DRA, pooled head: fit + validation scoring", r["case"])].append(r["seconds"])
    for r in read_rows(RESULTS / "image_references"):
        if r["form"] == "patch/both/f0.1" and "seconds" in r:
            cost[("PatchCore-class: memory + validation scoring", r["case"])].append(r["seconds"])
    names = sorted({name for name, _ in cost})
    lines = [
        "",
        "## Cost: median seconds over seeds (features cached; each from its own run, under other loads)",
        "",
        (
            "The rows were timed by different runs on the shared 2-core machine with different loads (this model's "
            "runs shared it with four other jobs), so ratios are indicative only. Scoring excludes feature extraction."
        ),
        "",
        "| what | " + " | ".join(cases) + " |",
        "|---|" + "---|" * len(cases),
    ]
    for name in names:
        cells = [f"{np.median(cost[(name, c)]):.1f}" if cost.get((name, c)) else "" for c in cases]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(parser, results=RESULTS / "residual_patch_validation", page=PAGES / "residual_patch_validation.md")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--families", default="mt,elpv")
    parser.add_argument("--configs", default="default")
    parser.add_argument("--from-seed", type=int, default=0, help="skip the seeds below (a second run beside a first)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.report_only:
        run(args)
    page(args)


if __name__ == "__main__":
    main()
