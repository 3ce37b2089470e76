"""How much of a paired gain is training noise? Base and AHL refitted with several training seeds per split.

Usage::

    python -m benchmarks.training_noise [--splits 3] [--train-seeds 4] [--models devnet,dra] [--families ...]

``benchmarks.ahl_validation`` fits each validation case once per seed, and
the detector's seed is the split's seed. Here every split (the same carved
validation cases, training data only) is fitted with ``--train-seeds``
training seeds ``1000 + t``, independent of the split's, for the base model
and for AHL. The seed sets the heads' initialisation, the batch order and
the pseudo-anomaly pool; the split stays fixed. The page separates the two
sources of spread, the split (std over splits of the AUC averaged over
training seeds) and training (mean std over training seeds within a split),
and gives AHL's gain paired on (split, training seed).

Rows go one JSON line per (model, variant, case, split, training seed) to
``benchmarks/results/training_noise/<tag>.jsonl`` and are skipped when
already there, so the script resumes; the page is rebuilt from every
``*.jsonl`` there on each run (``--report-only``: without fitting). What each
file there holds: ``benchmarks/results/training_noise/MANIFEST.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from ahl_plugins.detector import OSADDetector
from ahl_plugins.evaluation.metrics import auc_roc
from ahl_plugins.evaluation.significance import clustered_interval
from ahl_plugins.evaluation.summary import stats
from ahl_plugins.evaluation.tables import fmt
from benchmarks.harness import (
    PAGES,
    RESULTS,
    SHARED_MACHINE,
    add_common_flags,
    comma_list,
    command,
    open_rows,
)
from benchmarks.harness import write_page as write_markdown
from benchmarks.validation_splits import Case, validation_cases

DEFAULT_RESULTS = RESULTS / "training_noise"
DEFAULT_PAGE = PAGES / "training_noise.md"
#: training seeds start here, away from the split seeds (0, 1, ...), so no seed value is shared by both
TRAIN_SEED_BASE = 1000
#: AHL variants beside the defaults: name -> (detector options, what it changes); each is paired with ``base``
AHL_VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "ahl": ({}, "AHL, defaults"),
    "ahl_inner_0.01": ({"inner_lr": 0.01}, "AHL with a 1% inner step instead of 5%"),
}
VARIANTS = ("base", *AHL_VARIANTS)


def fit_score(model: str, variant: str, case: Case, train_seed: int) -> dict[str, Any]:
    started = time.perf_counter()
    options = AHL_VARIANTS[variant][0] if variant in AHL_VARIANTS else {}
    detector = OSADDetector(
        model,
        ahl=variant in AHL_VARIANTS,
        seed=train_seed,
        use_cache=case.is_image,
        **{**case.detector_options, **options},
    )
    detector.fit(case.x_fit, case.y_fit)
    seconds = time.perf_counter() - started
    return {"auc_roc": float(auc_roc(case.y_val, detector.decision_function(case.x_val))), "seconds": seconds}


def row_key(row: dict[str, Any]) -> tuple:
    """One unit of work: a model's variant on one split of a case, with one training seed."""
    return row["model"], row["variant"], row["case"], row["split"], row["train_seed"]


def _decompose(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Spread of one model's base AUC: between splits (of the mean over training seeds) and within a split."""
    by_split: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        by_split[(r["case"], r["split"])].append(r["auc_roc"])
    within = [statistics.stdev(v) for v in by_split.values() if len(v) > 1]
    per_case: dict[str, list[float]] = defaultdict(list)
    for (case, _split), v in by_split.items():
        per_case[case].append(statistics.fmean(v))
    between = [statistics.stdev(v) for v in per_case.values() if len(v) > 1]
    return {
        "training": statistics.fmean(within) if within else None,
        "split": statistics.fmean(between) if between else None,
    }


def _gains(rows: dict[tuple, dict[str, Any]], model: str, cases: set[str], ahl: str = "ahl") -> dict[int, list[float]]:
    """``ahl`` − base per training seed, paired on (case, split, training seed)."""
    out: dict[int, list[float]] = defaultdict(list)
    for (m, variant, case, split, seed), r in rows.items():
        if m == model and variant == ahl and case in cases and (model, "base", case, split, seed) in rows:
            out[seed].append(r["auc_roc"] - rows[(model, "base", case, split, seed)]["auc_roc"])
    return out


def cluster_se(by_seed: dict[int, list[float]]) -> float | None:
    """Standard error with training seeds as clusters (the library's :func:`clustered_interval`): a seed draws the
    same initial heads and pools for every case of one feature width, so its pairs are not independent."""
    return clustered_interval(by_seed)["se"]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_page(path: Path, rows: dict[tuple, dict[str, Any]], models: list[str]) -> None:
    families: dict[str, set[str]] = defaultdict(set)
    for r in rows.values():
        families[r["family"]].add(r["case"])
    groups = [(name, families[name]) for name in sorted(families)] + [("all", set().union(*families.values()))]
    lines = [
        "# Training noise against split noise, and AHL's gain paired on both",
        "",
        f"Generated by `{command('training_noise')}`; do not edit by hand. Validation AUC-ROC on the cases of "
        "`benchmarks/validation_splits.py` (training data only). Each split is fitted with several training seeds "
        f"({TRAIN_SEED_BASE} + t: heads' initialisation, batch order, pseudo-anomaly pool), base and AHL alike. "
        "*training std*: the std of the base model's AUC over training seeds on one split, averaged over splits; "
        "*split std*: the std over a case's splits of the AUC averaged over training seeds, averaged over cases. "
        "*variant − base*: AHL (`ahl`: defaults; "
        + "; ".join(f"`{n}`: {text}" for n, (_, text) in AHL_VARIANTS.items() if n != "ahl")
        + ") paired with the base model on (split, training seed), mean ± std; *SE*: std / √n, treating pairs as "
        "independent; *SE by seed*: the cluster-robust SE with each training seed as one cluster, because one seed "
        "gives the same initial heads and random draws on every case of the same width, so its pairs move together "
        "(`ahl_plugins.evaluation.significance.clustered_interval`; with equal pairs per seed it equals the std of "
        "the per-seed mean gains / √(seeds)); *per seed*: the mean gain of each training seed; *up / down*: pairs above / "
        "below zero.",
        "",
    ]
    for model in models:
        mine = {k: r for k, r in rows.items() if k[0] == model}
        if not mine:
            continue
        lines += [
            f"## {model}",
            "",
            "| family | cases | splits × seeds | base AUC | training std | split std | variant | variant − base | SE "
            "| SE by seed | per seed | up / down |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        present = [v for v in AHL_VARIANTS if any(k[1] == v for k in mine)]
        for (name, cases), variant in ((g, v) for g in groups for v in present):
            base = [r for k, r in mine.items() if k[1] == "base" and k[2] in cases]
            if not base:
                continue
            spread = _decompose(base)
            by_seed = _gains(rows, model, cases, variant)
            gains = [g for seed in sorted(by_seed) for g in by_seed[seed]]
            if not gains:  # this variant did not run on this family
                continue
            summary = stats(gains)
            per_seed = " ".join(f"{statistics.fmean(by_seed[seed]):+.3f}" for seed in sorted(by_seed))
            se = summary["std"] / len(gains) ** 0.5 if len(gains) > 1 else None
            runs = len({(r["case"], r["split"]) for r in base})
            seeds = len({r["train_seed"] for r in base})
            lines.append(
                f"| {name} | {len(cases)} | {runs} × {seeds} | {fmt(stats([r['auc_roc'] for r in base]))} | "
                f"{_number(spread['training'])} | {_number(spread['split'])} | {variant} | "
                f"{fmt(summary, signed=True)} (n {len(gains)}) "
                f"| {_number(se)} | {_number(cluster_se(by_seed))} | {per_seed} | "
                f"{sum(g > 0 for g in gains)} / {sum(g < 0 for g in gains)} |"
            )
        seconds = {
            v: statistics.fmean(r["seconds"] for k, r in mine.items() if k[1] == v)
            for v in VARIANTS
            if any(k[1] == v for k in mine)
        }
        lines += ["", "Mean fit seconds: " + ", ".join(f"{v} {s:.1f}" for v, s in seconds.items()) + ".", ""]
    write_markdown(path, lines, machine=SHARED_MACHINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=3, help="validation splits per case (seeds 0..N-1)")
    parser.add_argument("--train-seeds", type=int, default=4, help="training seeds per split")
    parser.add_argument("--models", default="devnet,dra")
    parser.add_argument("--families", default="nsl_kdd,digits,pmlb,adbench")
    parser.add_argument("--variants", default="base,ahl", help=f"comma-separated, of {', '.join(VARIANTS)}")
    add_common_flags(parser, results=DEFAULT_RESULTS, page=DEFAULT_PAGE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models, variants = comma_list(args.models), comma_list(args.variants)
    if set(variants) - set(VARIANTS):
        parser.error(f"unknown variant(s) {sorted(set(variants) - set(VARIANTS))}; known: {list(VARIANTS)}")
    rows = open_rows(args, row_key)
    if not args.report_only:
        for case in validation_cases(args.splits, tuple(comma_list(args.families))):
            for model in models:
                for train_seed in range(TRAIN_SEED_BASE, TRAIN_SEED_BASE + args.train_seeds):
                    for variant in variants:
                        if (model, variant, case.name, case.seed, train_seed) in rows:
                            continue
                        result = fit_score(model, variant, case, train_seed)
                        rows.add(
                            {
                                "model": model,
                                "variant": variant,
                                "case": case.name,
                                "family": case.family,
                                "split": case.seed,
                                "train_seed": train_seed,
                                **result,
                            }
                        )
                        print(
                            f"{case.name} split {case.seed} seed {train_seed} {model} {variant}: "
                            f"{result['auc_roc']:.3f} ({result['seconds']:.1f} s)",
                            flush=True,
                        )
    write_page(args.page, rows.by_key, sorted({k[0] for k in rows.by_key}))  # every model on disk, not only this run's
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
