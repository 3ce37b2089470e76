"""Which AHL and base-model defaults hold up? Measured on validation splits of training data only.

Usage::

    python -m benchmarks.ahl_validation [--seeds 3] [--models devnet,dra] [--configs a,b] [--threads 1]

Every configuration in ``CONFIGS`` is fitted on each validation case of
``validation_splits.py`` (NSL-KDD's training file and digits in the hard
setting; PMLB, the ADBench MVTec embeddings and Magnetic Tile's feature maps
carved from their results split's training part) and scored on its
validation part. Results go one JSON line per (config, model, case, seed) to
``<results>/<tag>.jsonl`` and are skipped when already there, so the script
resumes; the page is rebuilt from every ``*.jsonl`` of ``<results>`` each run
(``--report-only`` rebuilds it without fitting). What each file there holds:
``benchmarks/results/validation/MANIFEST.md``.

The rows live in the repository (``benchmarks/results/validation``), so a
fresh clone rebuilds the page. Rounds measured before that were kept under
the untracked ``runs/validation``: their page, ``docs/benchmarks/ahl_validation.md``
(``--results runs/validation --page docs/benchmarks/ahl_validation.md``), is
kept as it was generated.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ahl_plugins.detector import OSADDetector
from ahl_plugins.evaluation.knn import knn_reference, knn_scores
from ahl_plugins.evaluation.metrics import auc_roc
from ahl_plugins.evaluation.report import fmt, stats
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
from benchmarks.validation_m1 import m1_section
from benchmarks.validation_splits import Case, validation_cases

DEFAULT_RESULTS = RESULTS / "validation"
DEFAULT_PAGE = PAGES / "ahl_validation_current_defaults.md"

#: DRA's vector residual as it was when `base` and `ahl` were measured; `*_abs_residual` are the defaults since.
SIGNED = {"dra": {"vector_residual": "signed"}, "devnet": {}}

#: name -> (ahl, detector options (or {model: options}), what it tests).
CONFIGS: dict[str, tuple[bool, dict[str, Any], str]] = {
    "base": (False, SIGNED, "the base model, defaults (DRA: signed vector residual)"),
    "base_paper": (False, {"preset": "paper"}, "the base model, paper preset"),
    "ahl": (True, SIGNED, "AHL, defaults (DRA: signed vector residual)"),
    "ahl_paper": (True, {"preset": "paper"}, "AHL, paper preset (base and AHL both paper)"),
    "ahl_sgd_inner": (
        True,
        {"inner_update": "sgd", "inner_lr": 2e-4},
        "defaults but the paper's plain 2e-4 inner step",
    ),
    "ahl_uniform_prior": (True, {"task_prior": "uniform"}, "defaults but every task weighs 1/T before SGE"),
    "ahl_query_all": (True, {"query_normals": "all"}, "defaults but every normal in every query set"),
    "ahl_second_order": (
        True,
        {"dra": {"vector_residual": "signed", "first_order": False}, "devnet": {"first_order": False}},
        "as `ahl_sge4` (4 LSTM steps) with second-order meta-gradients",
    ),
    "ahl_minmax_sge": (
        True,
        {
            "score_normalisation": "minmax",
            "estimator_options": {"relative_errors": False, "temperature_mode": "absolute"},
        },
        "defaults but the paper's SGE (min-max scores, absolute errors, temperature 1)",
    ),
    "ahl_no_sge": (True, {"ablation": "uniform"}, "defaults, SGE off (prior weights only)"),
    "ahl_sge4": (
        True,
        {
            "dra": {"vector_residual": "signed", "estimator_options": {"train_steps": 4}},
            "devnet": {"estimator_options": {"train_steps": 4}},
        },
        "as `ahl` (whose SGE took 10 LSTM steps per epoch) with 4 steps, the default since",
    ),
    "ahl_layerwise": (
        True,
        {"inner_update": "layerwise"},
        "defaults of the time but the relative inner step taken per tensor (DRA's default since)",
    ),
    "ahl_no_adapt": (True, {"inner_lr": 1e-6}, "defaults but (almost) no inner step: CDL without adaptation"),
    "ahl_pair_prior": (True, {"task_prior": "pair_size"}, "defaults but the prior is support × query normals"),
    "ahl_inner_0.02": (True, {"inner_lr": 0.02}, "defaults with a smaller relative inner step (0.02)"),
    "ahl_task_batch16": (True, {"task_batch_size": 16}, "defaults with per-task batches of 16 instead of 8"),
    "ahl_steps10": (
        True,
        {"outer_steps_per_epoch": 10, "outer_lr": 4e-4},
        "defaults with 10 outer steps per epoch at 4e-4 (the same lr × steps)",
    ),
    "ahl_outer_2e-3": (
        True,
        {"outer_lr": 2e-3},
        "defaults with the paper's outer lr 2e-3 (2.5× the base loop's budget)",
    ),
    "ahl_k4": (True, {"n_clusters": 4}, "defaults with k = 4 clusters (T = 12 tasks) instead of 3"),
    "ahl_inner_0.2": (True, {"inner_lr": 0.2}, "defaults with a larger relative inner step (0.2)"),
    "ahl_inner_0.01": (True, {"inner_lr": 0.01}, "defaults with a smaller relative inner step (0.01)"),
    "base_now": (False, {}, "the base model, defaults of December 2026 (DRA: |residual|, distance head)"),
    "ahl_now": (True, {}, "AHL, defaults of December 2026 (DRA: per-tensor inner step)"),
    "ahl_warm_0.5": (
        True,
        {"warm_start": 0.5},
        "as `ahl_now`, but the base loop trains the first half of the epochs and AHL continues",
    ),
    "ahl_warm_0.33": (
        True,
        {"warm_start": 1 / 3},
        "as `ahl_now`, but the base loop trains the first third of the epochs and AHL continues",
    ),
    "ahl_now_query_all": (True, {"query_normals": "all"}, "as `ahl_now`, but every normal in every query set"),
    "ahl_now_second_order": (True, {"first_order": False}, "as `ahl_now`, with second-order meta-gradients"),
    "ahl_now_inner_0.2": (True, {"inner_lr": 0.2}, "as `ahl_now`, with a 4× larger relative inner step (0.2)"),
    "ahl_now_steps20": (
        True,
        {"outer_steps_per_epoch": 20, "outer_lr": 2e-4},
        "as `ahl_now`, with 20 outer steps of 2e-4 per epoch (the base loop's steps)",
    ),
    "ahl_now_support1": (
        True,
        {"support_loss_weight": 1.0},
        "as `ahl_now`, plus the unified model's own support losses in the meta-objective (weight 1)",
    ),
    "ahl_now_support0.5": (True, {"support_loss_weight": 0.5}, "as `ahl_now_support1`, weight 0.5"),
    "ahl_now_support2": (True, {"support_loss_weight": 2.0}, "as `ahl_now_support1`, weight 2"),
    "base_now_no_normality": (
        False,
        {"score_normality": False},
        "as `base_now`, DRA's normality head trained but left out of the score",
    ),
    "ahl_now_no_normality": (
        True,
        {"score_normality": False},
        "as `ahl_now`, DRA's normality head trained but left out of the score",
    ),
    "base_fp64": (
        False,
        {},
        "`base_now` after DRA's nearest-normal distances moved to float64 (every DRA row "
        "above ran with float32 distances, where ~1 training normal in 5 was its own neighbour)",
    ),
    "ahl_fp64": (True, {}, "`ahl_now` after the same fix"),
    "ahl_task_refs": (
        True,
        {"task_references": "support"},
        "as `ahl_now`, but each base model finds DRA's nearest references among its support normals",
    ),
    "ahl_adapted_mean": (
        True,
        {"final_model": "adapted_mean"},
        "as `ahl_now`, but the final model is the estimator-weighted mean of the T base models "
        "adapted from θ_g on fresh support batches",
    ),
    "base_p": (
        False,
        {},
        "the base model, defaults after DRA's float64 search, on 6 seeds (a high-power rerun; "
        "against the same defaults on seeds 0-1 it must be 0: the runs are deterministic)",
    ),
    "ahl_p": (True, {}, "AHL, defaults, on the same 6 seeds"),
    "ahl_p_support1": (
        True,
        {"support_loss_weight": 1.0},
        "as `ahl_p`, plus the unified model's support losses (weight 1)",
    ),
    "ahl_p_adapted_mean": (True, {"final_model": "adapted_mean"}, 'as `ahl_p`, with `final_model="adapted_mean"`'),
    "ahl_p_batch16": (True, {"task_batch_size": 16}, "as `ahl_p`, with per-task batches of 16 instead of 8"),
    "ahl_p_inner_0.01": (
        True,
        {"inner_lr": 0.01},
        "as `ahl_p`, DRA's per-tensor inner step at 1% of each tensor's norm "
        "instead of 5% (the unified model sits one inner step before the adapted ones; at 5% that "
        "step inverted the holistic normality head on the maps)",
    ),
    "ahl_p_support1_inner_0.01": (
        True,
        {"support_loss_weight": 1.0, "inner_lr": 0.01},
        "as `ahl_p`, with support losses (weight 1) and a 1% inner step together (M = 1: "
        "each alone halves AHL(DevNet)'s loss to DevNet)",
    ),
    "ahl_m1_both": (
        True,
        {"single_anomaly": "both", "m1_outer_steps": None, "guard": False},
        "AHL, defaults, with the paper's M = 1 tasks (the one anomaly in every support and query set; "
        "`ahl_p` at M = 1; issue 31)",
    ),
    "ahl_m1_query": (
        True,
        {"single_anomaly": "query", "m1_outer_steps": None, "guard": False},
        "AHL, defaults, with the one anomaly in query sets only at M = 1 (issue 31)",
    ),
    "ahl_m1_query_support1": (
        True,
        {"single_anomaly": "query", "support_loss_weight": 1.0, "m1_outer_steps": None, "guard": False},
        "as `ahl_m1_query`, plus the unified model's own support losses (weight 1)",
    ),
    "ahl_m1_query_adapted": (
        True,
        {"single_anomaly": "query", "final_model": "adapted_mean", "m1_outer_steps": None, "guard": False},
        'as `ahl_m1_query`, with `final_model="adapted_mean"`',
    ),
    "ahl_m1_query_inner01": (
        True,
        {"single_anomaly": "query", "inner_lr": 0.01, "m1_outer_steps": None, "guard": False},
        "as `ahl_m1_query`, with a 1% relative inner step",
    ),
    "ahl_m1_query_nopseudo": (
        True,
        {"single_anomaly": "query_normal_support", "m1_outer_steps": None, "guard": False},
        "as `ahl_m1_query`, and no pseudo anomalies in the support sets (support: normals only at M = 1)",
    ),
    "ahl_m1_nopseudo_steps20": (
        True,
        {
            "single_anomaly": "query_normal_support",
            "outer_steps_per_epoch": 20,
            "outer_lr": 2e-4,
            "m1_outer_steps": None,
            "guard": False,
        },
        "as `ahl_m1_query_nopseudo`, with 20 outer steps of 2e-4 per epoch (the base loop's steps)",
    ),
    "ahl_m1_nopseudo_inner01": (
        True,
        {"single_anomaly": "query_normal_support", "inner_lr": 0.01, "m1_outer_steps": None, "guard": False},
        "as `ahl_m1_query_nopseudo`, with a 1% relative inner step",
    ),
    "ahl_m1_nopseudo_uniform": (
        True,
        {
            "single_anomaly": "query_normal_support",
            "task_prior": "uniform",
            "ablation": "uniform",
            "m1_outer_steps": None,
            "guard": False,
        },
        "as `ahl_m1_query_nopseudo`, every task weighing 1/T (no prior, no SGE)",
    ),
    "ahl_m1_fix": (
        True,
        {"guard": False},
        'AHL, the defaults of issue 31 without the guard: at M = 1 `single_anomaly="query_normal_support"` and '
        "`m1_outer_steps=20` (at M = 10 the same as `ahl_p`)",
    ),
    "ahl_guard": (
        True,
        {"guard_tolerance": 0.05},
        "AHL, the defaults of issue 31 with the guard (20% held out to decide, tolerance 0.05, the chosen model "
        "refitted on all the data)",
    ),
    "ahl_guard_holdout": (
        True,
        {"guard_refit": False},
        "the guard's first form: the chosen model kept as trained on the other 80% (`guard_refit=False`)",
    ),
    "ahl_guard_paper_m1": (
        True,
        {"single_anomaly": "both", "m1_outer_steps": None},
        "the guard alone: AHL with the paper's M = 1 tasks and outer steps, behind the guard",
    ),
    "base_random_mean": (
        False,
        {"residual_reference": "random_mean"},
        "base defaults but DRA's paper residual (5 random normals)",
    ),
    "base_raw_sum": (False, {"head_calibration": False}, "base defaults but DRA's heads summed raw (no calibration)"),
    "base_linear_heads": (False, {"vector_head_output": "linear"}, "base defaults but DRA's vector heads linear"),
    "base_devnet20": (False, {"hidden": [20]}, "base defaults but DevNet's KDD'19 20-unit MLP"),
    "base_lr1e-3": (False, {"lr": 1e-3}, "base defaults with Adam lr 1e-3"),
    "base_abs_residual": (False, {"vector_residual": "abs"}, "base, DRA's residual MLP reads |residual| (the default)"),
    "ahl_abs_residual": (True, {"vector_residual": "abs"}, "AHL, DRA's residual MLP reads |residual| (the default)"),
    "base_distance": (
        False,
        {"distance_head": True, "vector_residual": "abs"},
        "base, |residual| and DRA's distance head",
    ),
    "ahl_distance": (
        True,
        {"distance_head": True, "vector_residual": "abs"},
        "AHL, |residual| and DRA's distance head",
    ),
}

#: configurations that only change one model's options
MODEL_ONLY = {
    "ahl_task_refs": "dra",
    "base_fp64": "dra",
    "ahl_fp64": "dra",
    "base_now_no_normality": "dra",
    "ahl_now_no_normality": "dra",
    "base_random_mean": "dra",
    "base_raw_sum": "dra",
    "base_linear_heads": "dra",
    "base_devnet20": "devnet",
    "base_abs_residual": "dra",
    "ahl_p_inner_0.01": "dra",
    "ahl_abs_residual": "dra",
    "base_distance": "dra",
    "ahl_distance": "dra",
}


def options_for(config: str, model: str) -> dict[str, Any]:
    options = CONFIGS[config][1]
    return dict(options.get(model, {})) if set(options) <= {"dra", "devnet"} and options else dict(options)


def run_one(model: str, config: str, case: Case) -> dict[str, Any]:
    ahl = CONFIGS[config][0]
    options = options_for(config, model)
    started = time.perf_counter()
    options = {**case.detector_options, **options}
    # image cases read their backbone features from the feature cache the results runs filled
    detector = OSADDetector(model, ahl=ahl, seed=case.seed, use_cache=case.is_image, **options).fit(
        case.x_fit, case.y_fit
    )
    seconds = time.perf_counter() - started
    auc = auc_roc(case.y_val, detector.decision_function(case.x_val))
    guard = (detector.fit_info_ or {}).get("guard")
    return {"auc_roc": float(auc), "seconds": seconds, **({"guard": guard} if guard else {})}


def knn_auc(case: Case) -> float:
    """The label-free 5-NN row, on features standardised with the fit rows' statistics (as the identity extractor)."""
    if case.is_image:
        from ahl_plugins.features.cache import FeatureCache, resolve_cache_dir

        scores = knn_reference(
            case.x_fit,
            case.y_fit,
            case.x_val,
            extractor=case.detector_options.get("extractor"),
            cache=FeatureCache(resolve_cache_dir(None)),
        )
        return float(auc_roc(case.y_val, scores))
    x_fit = np.asarray(case.x_fit, dtype=np.float64)
    mu, sd = x_fit.mean(0), np.maximum(x_fit.std(0), 1e-6)
    normals = (x_fit[case.y_fit == 0] - mu) / sd
    return float(auc_roc(case.y_val, knn_scores(normals, (np.asarray(case.x_val, np.float64) - mu) / sd)))


def row_key(row: dict[str, Any]) -> tuple:
    """One unit of work: a configuration of one model on one case, seed and M (k-NN: model ``-``).

    Rows written before M = 1 was measured carry no ``n_anomalies``: they are M = 10.
    """
    return row["config"], row["model"], row["case"], row["seed"], row.get("n_anomalies", 10)


def rows_at(by_key: dict[tuple, dict[str, Any]], n_anomalies: int) -> dict[tuple, dict[str, Any]]:
    """The rows of one M, keyed (config, model, case, seed) as the page's tables pair them."""
    return {key[:4]: row for key, row in by_key.items() if key[4] == n_anomalies}


def _round(configs: set[str], reference: str, dra: str | None = None) -> dict[str, dict[str, str]]:
    """One round of measurements: its configurations, paired with ``reference`` (DRA: ``dra`` when given)."""
    return {c: {"devnet": reference, "dra": dra or reference} for c in configs}


#: what each configuration's paired gain is taken against, per model (default: `ahl` for AHL variants, `base`
#: otherwise); each round was measured against the defaults of its time
REFERENCE: dict[str, dict[str, str]] = {
    **_round({"ahl", "ahl_paper", "base_paper"}, "base"),
    **_round({"ahl_second_order"}, "ahl_sge4"),
    **_round({"ahl_distance"}, "ahl_abs_residual"),
    **_round({"base_distance"}, "base_abs_residual"),
    **_round({"ahl_now_no_normality"}, "base_now_no_normality"),
    **_round({"ahl_fp64"}, "base_fp64"),
    # after DRA's |residual| and distance head became defaults (DevNet's did not change, so it stays `ahl`)
    **_round({"ahl_layerwise", "ahl_no_adapt"}, "ahl", dra="ahl_distance"),
    # after DRA's per-tensor inner step became its default
    **_round(
        {"ahl_pair_prior", "ahl_inner_0.02", "ahl_task_batch16", "ahl_steps10", "ahl_outer_2e-3", "ahl_k4"},
        "ahl",
        dra="ahl_layerwise",
    ),
    # against today's defaults (``docs/benchmarks/ahl_validation_current_defaults.md``)
    **_round(
        {
            "ahl_now",
            "ahl_warm_0.5",
            "ahl_warm_0.33",
            "ahl_task_refs",
            "ahl_now_query_all",
            "ahl_now_second_order",
            "ahl_now_inner_0.2",
            "ahl_now_steps20",
            "ahl_now_support0.5",
            "ahl_now_support1",
            "ahl_now_support2",
            "base_now_no_normality",
            "base_fp64",
        },
        "base_now",
    ),
    # after DRA's float64 search
    **_round({"ahl_adapted_mean", "base_p"}, "base_now", dra="base_fp64"),
    # the high-power rerun (6 seeds)
    **_round(
        {
            "ahl_p",
            "ahl_p_support1",
            "ahl_p_adapted_mean",
            "ahl_p_batch16",
            "ahl_p_inner_0.01",
            "ahl_p_support1_inner_0.01",
            "ahl_m1_both",
            "ahl_m1_query",
            "ahl_m1_query_support1",
            "ahl_m1_query_adapted",
            "ahl_m1_query_inner01",
            "ahl_m1_query_nopseudo",
            "ahl_m1_nopseudo_steps20",
            "ahl_m1_nopseudo_inner01",
            "ahl_m1_nopseudo_uniform",
            "ahl_m1_fix",
            "ahl_guard",
            "ahl_guard_holdout",
            "ahl_guard_paper_m1",
        },
        "base_p",
    ),
}


def reference_of(config: str, model: str = "devnet") -> str:
    if config in REFERENCE:
        return REFERENCE[config][model]
    return "ahl" if config.startswith("ahl") else "base"


def _paired(rows: dict[tuple, dict[str, Any]], config: str, reference: str, model: str, cases: set[str] | None):
    out = []
    for (c, m, case, seed), r in rows.items():
        if c == config and m == model and (cases is None or case in cases) and (reference, model, case, seed) in rows:
            out.append(r["auc_roc"] - rows[(reference, model, case, seed)]["auc_roc"])
    return out


def write_page(
    path: Path,
    rows: dict[tuple, dict[str, Any]],
    models: list[str],
    title: str = "AHL and base-model defaults, chosen on validation data",
    extra: list[str] | None = None,
) -> None:
    families: dict[str, set[str]] = defaultdict(set)
    for row in rows.values():
        families[row["family"]].add(row["case"])
    configs = [c for c in CONFIGS if any(k[0] == c for k in rows)]
    lines = [
        f"# {title}",
        "",
        f"Generated by `{command('ahl_validation')}`; do not edit by hand. Validation AUC-ROC on splits "
        "carved from training data only (`benchmarks/validation_splits.py` says how; no sample of any published "
        "test set is read). Cells: mean AUC-ROC over the cases × seeds a configuration has run on, and in brackets "
        "the paired gain over its reference configuration (same model, case and seed): mean ± std (n pairs). The "
        "reference is `base` for base-model variants and for `ahl` / `ahl_paper`, `ahl` for AHL variants, unless "
        "the description names another. *k-NN*: label-free 5-NN distance on the same standardised features.",
        "",
        "Configurations:",
        "",
    ]
    lines += [
        f"- `{name}` (vs `{reference_of(name)}`"
        + (f"; DRA vs `{reference_of(name, 'dra')}`" if reference_of(name, "dra") != reference_of(name) else "")
        + f"): {CONFIGS[name][2]}"
        for name in configs
        if name != "base"
    ]
    if "base" in configs:
        lines.insert(len(lines) - sum(1 for n in configs if n != "base"), f"- `base`: {CONFIGS['base'][2]}")
    lines.append("")
    knn = {(r["case"], r["seed"]): r["auc_roc"] for k, r in rows.items() if k[0] == "knn"}
    names = sorted(families)
    for model in models:
        lines += [
            f"## {model}",
            "",
            "| config | " + " | ".join(names) + " | all (paired gain) | fit s |",
            "|---" * (len(names) + 3) + "|",
        ]
        knn_cells = [fmt(stats([v for (case, _s), v in knn.items() if case in families[f]])) for f in names]
        lines.append("| k-NN | " + " | ".join(knn_cells) + f" | {fmt(stats(list(knn.values())))} | |")
        for config in configs:
            mine = [r for k, r in rows.items() if k[0] == config and k[1] == model]
            if not mine:
                continue
            reference = reference_of(config, model)
            cells = []
            for family in names:
                vals = [r["auc_roc"] for r in mine if r["case"] in families[family]]
                gains = _paired(rows, config, reference, model, families[family]) if config != "base" else []
                cell = fmt(stats(vals)) if vals else "-"
                if gains:
                    cell += f" ({fmt(stats(gains), signed=True)}, n {len(gains)})"
                cells.append(cell)
            gains = _paired(rows, config, reference, model, None) if config != "base" else []
            total = fmt(stats([r["auc_roc"] for r in mine]))
            if gains:
                total += f" ({fmt(stats(gains), signed=True)}, n {len(gains)})"
            seconds = np.mean([r["seconds"] for r in mine])
            lines.append(f"| {config} | " + " | ".join(cells) + f" | {total} | {seconds:.1f} |")
        lines.append("")
    write_markdown(path, lines + (extra or []), machine=SHARED_MACHINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--models", default="devnet,dra")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--families", default="nsl_kdd,digits,pmlb,adbench,mt")
    parser.add_argument("--title", default="AHL variants against the current defaults, on validation data")
    parser.add_argument(
        "--n-anomalies",
        type=int,
        default=10,
        choices=(1, 10),
        help="M, labelled anomalies of the protocol (1: the cases train on one; see validation_splits)",
    )
    add_common_flags(parser, results=DEFAULT_RESULTS, page=DEFAULT_PAGE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models, configs = comma_list(args.models), comma_list(args.configs)
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown config(s) {unknown}; known: {sorted(CONFIGS)}")
    rows = open_rows(args, row_key)
    if not args.report_only:
        for case in validation_cases(args.seeds, tuple(comma_list(args.families)), args.n_anomalies):
            jobs = [("knn", "-")] + [(c, m) for c in configs for m in models if MODEL_ONLY.get(c, m) == m]
            for config, model in jobs:
                if (config, model, case.name, case.seed, case.n_anomalies) in rows:
                    continue
                result = {"auc_roc": knn_auc(case), "seconds": 0.0} if config == "knn" else run_one(model, config, case)
                rows.add(
                    {
                        "config": config,
                        "model": model,
                        "case": case.name,
                        "family": case.family,
                        "seed": case.seed,
                        "n_anomalies": case.n_anomalies,
                        **result,
                    }
                )
                print(
                    f"{case.name} s{case.seed} M{case.n_anomalies} {model} {config}: {result['auc_roc']:.3f} "
                    f"({result['seconds']:.1f} s)",
                    flush=True,
                )
    # every model on disk, not only this run's: a run for one model must not drop the others from the page
    ten = rows_at(rows.by_key, 10)
    write_page(
        args.page,
        ten,
        sorted({k[1] for k in ten if k[0] != "knn"}),
        args.title,
        extra=m1_section(rows_at(rows.by_key, 1), ten),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
