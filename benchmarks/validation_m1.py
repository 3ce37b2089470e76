"""The M = 1 section of the validation page: does one labelled anomaly want other AHL defaults?

The AHL paper reports M = 10 and M = 1 and gains most at M = 1, but every default here was chosen at
M = 10. This section pairs, on the same validation cases and seeds, AHL against its base at M = 1 (and
beside it at M = 10), and each AHL variant against today's AHL defaults at both M. A default is kept at
M = 1 unless its variant *helps* on the families that stay clean at M = 1 (``CLEAN_AT_M1``) and does not
*hurt* over all families: the carved families' validation anomalies sit in the M = 1 results' test sets,
so they may veto a change but never choose one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ahl_plugins.evaluation.significance import paired_interval
from benchmarks.validation_splits import CLEAN_AT_M1

Rows = dict[tuple, dict[str, Any]]
CONFIG_NOTE = "see `CONFIGS` in `benchmarks/ahl_validation.py`"

#: today's defaults, measured on 6 seeds (``*_p`` in ``ahl_validation.CONFIGS``)
BASE, AHL = "base_p", "ahl_p"

#: the AHL defaults that could plausibly depend on M, and the variant that tests each at M = 1
DEFAULTS_TESTED = {
    "ahl_p_support1": "`support_loss_weight=0` (the meta-objective holds only the adapted models' query losses; "
    "weight 1 adds the unified model's own support losses)",
    "ahl_now_steps20": "`outer_steps_per_epoch=5`, `outer_lr=8e-4` (large outer steps on a task set that repeats "
    "one anomaly)",
    "ahl_warm_0.5": "`warm_start=0` (meta-training from the first epoch)",
    "ahl_no_sge": "the SGE estimator's task weights (which rank tasks by scores on one anomaly)",
    "ahl_inner_0.01": "`inner_lr=0.05` (relative inner step; one anomaly is a third of every support batch)",
    "ahl_no_adapt": "the inner step itself (`inner_lr=1e-6`: CDL without adaptation; a diagnostic)",
    "ahl_p_inner_0.01": "DRA's per-tensor inner step of 5% (1% instead)",
    "ahl_p_support1_inner_0.01": "`support_loss_weight=0` and `inner_lr=0.05` together (both changed)",
    "ahl_m1_both": "the paper's M = 1 tasks (`single_anomaly=\"both\"`, as `ahl_p`); issue 31's reference",
    "ahl_m1_query": "HADG's M = 1 tasks: the one anomaly in the query sets only (issue 31)",
    "ahl_m1_query_support1": "as `ahl_m1_query`, with the unified model's support losses",
    "ahl_m1_query_adapted": "as `ahl_m1_query`, scored by the mean of the adapted models",
    "ahl_m1_query_inner01": "as `ahl_m1_query`, with a 1% inner step",
    "ahl_m1_query_nopseudo": "HADG's M = 1 tasks: the anomaly and the pseudo anomalies in the query sets only",
    "ahl_m1_nopseudo_inner01": "as `ahl_m1_query_nopseudo`, with a 1% inner step",
    "ahl_m1_nopseudo_uniform": "as `ahl_m1_query_nopseudo`, uniform task weights",
    "ahl_m1_nopseudo_steps20": "as `ahl_m1_query_nopseudo`, 20 outer steps of 2e-4 (issue 31's fix written out)",
    "ahl_m1_fix": "issue 31's M = 1 defaults without the guard",
    "ahl_guard": "issue 31's defaults with the guard",
}
#: defaults whose construction does not involve the labelled anomalies, so M cannot change what they do
NOT_M_DEPENDENT = (
    '`n_clusters=3` and `query_normals="cluster"` (k-means on normals only)',
    "`task_batch_size` (balanced thirds: normal, seen, pseudo, whatever M)",
    "the pseudo-anomaly generators (made from normals)",
)


def paired_gains(
    rows: Rows, config: str, reference: str, model: str, families: set[str] | None = None, only: Rows | None = None
) -> list[float]:
    """``config`` − ``reference`` per (case, seed) both ran on, for ``model``, within ``families`` (None: all);
    ``only``: just the (case, seed) pairs these rows (the other M's) hold too, so both M pair on the same cases."""
    out = []
    for (c, m, case, seed), row in rows.items():
        if c != config or m != model or (families is not None and row["family"] not in families):
            continue
        if only is not None and not {(config, model, case, seed), (reference, model, case, seed)} <= only.keys():
            continue
        ref = rows.get((reference, model, case, seed))
        if ref is not None:
            out.append(row["auc_roc"] - ref["auc_roc"])
    return out


def interval_cell(gains: list[float]) -> str:
    """``+0.012 [-0.004, +0.028] no detectable effect (n 18)``: never a mean alone."""
    if not gains:
        return "-"
    stat = paired_interval(gains)
    if stat["ci_low"] is None:
        return f"{stat['mean']:+.3f} (n {stat['n']})"
    return f"{stat['mean']:+.3f} [{stat['ci_low']:+.3f}, {stat['ci_high']:+.3f}] {stat['verdict']} (n {stat['n']})"


def decide(clean: list[float], every: list[float]) -> str:
    """The rule in the module docstring, as a sentence: does the variant beat today's AHL at M = 1?"""
    clean_verdict = paired_interval(clean)["verdict"] if len(clean) > 1 else None
    all_verdict = paired_interval(every)["verdict"] if len(every) > 1 else None
    if clean_verdict is None:
        return "not measured on the clean families"
    if clean_verdict == "helps" and all_verdict != "hurts":
        return "**beats today's AHL at M = 1**"
    return "no better than today's AHL at M = 1"


def conclusion(m1: Rows, model: str, variants: list[str]) -> str:
    """One model's answer: do the defaults hold at M = 1, does a variant win, or does AHL lose whatever we tried?

    A variant becomes an M = 1 default only if it beats today's AHL *and* is not below the base model on the
    clean families: a value that merely shrinks a loss to the base would make AHL a worse default than no AHL.
    """
    clean = set(CLEAN_AT_M1)
    ahl = paired_interval(paired_gains(m1, AHL, BASE, model, clean))
    if ahl["n"] < 2:
        return f"- {model}: not measured on the clean families yet."
    better = [
        v
        for v in variants
        if decide(paired_gains(m1, v, AHL, model, clean), paired_gains(m1, v, AHL, model)).startswith("**")
    ]
    fixed = [v for v in better if paired_interval(paired_gains(m1, v, BASE, model, clean))["verdict"] != "hurts"]
    if fixed:
        return (
            f"- {model}: AHL − base at M = 1 is {ahl['verdict']}; "
            + ", ".join(f"`{v}`" for v in fixed)
            + " beats today's AHL without falling below the base: **an M = 1 default** (docs/deviations.md)."
        )
    if ahl["verdict"] == "hurts":
        tried = ", ".join(f"`{v}`" for v in better) or "none"
        return (
            f"- {model}: AHL loses to its base at M = 1 on the clean families ({ahl['mean']:+.3f} "
            f"[{ahl['ci_low']:+.3f}, {ahl['ci_high']:+.3f}], n {ahl['n']}); variants that beat today's AHL "
            f"({tried}) still lose to the base, so **no default changes**: at M = 1, {model} without AHL is "
            "the better choice until a variant closes the gap."
        )
    return (
        f"- {model}: AHL − base at M = 1 is {ahl['verdict']} and no variant beats today's AHL: **the defaults hold**."
    )


def m1_section(m1: Rows, ten: Rows) -> list[str]:
    """The page's M = 1 section (empty when no M = 1 row exists)."""
    if not m1:
        return []
    families = sorted({row["family"] for row in m1.values()})
    models = sorted({key[1] for key in m1 if key[0] != "knn"})
    lines = [
        "## M = 1: one labelled anomaly",
        "",
        "Every case above, trained with one of its labelled anomalies (the first of the same draw) and validated "
        "on the same validation part; rows written with `--n-anomalies 1`. Cells: paired gain, mean [95% paired t "
        "interval] verdict (n = cases × seeds). *Clean at M = 1*: " + ", ".join(CLEAN_AT_M1) + " (no published "
        "test set holds their validation samples); the carved families validate on anomalies that the M = 1 "
        "results test on, so they can veto a change but not choose one. `base_p` / `ahl_p` were measured before "
        "issue 31, with the paper's M = 1 tasks (the one anomaly in every task's support *and* query set); since "
        "then the M = 1 defaults differ (`single_anomaly`, `m1_outer_steps`, the guard): their validation is "
        "`docs/benchmarks/ahl_m1_fix.md`.",
        "",
    ]
    for model in models:
        lines += [
            f"### {model}: AHL − base, M = 1 beside M = 10",
            "",
            "| family | clean at M = 1 | base M = 1 | AHL M = 1 | AHL − base, M = 1 | AHL − base, M = 10 (same cases) |",
            "|---|---|---|---|---|---|",
        ]
        for family in [*families, None]:
            fams = set(families) if family is None else {family}
            base = [r["auc_roc"] for k, r in m1.items() if k[0] == BASE and k[1] == model and r["family"] in fams]
            ahl = [r["auc_roc"] for k, r in m1.items() if k[0] == AHL and k[1] == model and r["family"] in fams]
            if not base and not ahl:
                continue
            name = "all" if family is None else family
            clean = "-" if family is None else "yes" if family in CLEAN_AT_M1 else "no"

            def mean(v: list[float]) -> str:
                return f"{sum(v) / len(v):.3f}" if v else "-"

            lines.append(
                f"| {name} | {clean} | {mean(base)} | {mean(ahl)} | "
                f"{interval_cell(paired_gains(m1, AHL, BASE, model, fams))} | "
                f"{interval_cell(paired_gains(ten, AHL, BASE, model, fams, only=m1))} |"
            )
        lines.append("")
    variants = sorted({key[0] for key in m1} - {BASE, AHL, "knn"})
    if variants:
        lines += [
            "### Does M = 1 want another value? Each variant − today's AHL (same model, case, seed)",
            "",
            "| model | variant | clean families, M = 1 | all families, M = 1 | the same cases, M = 10 | variant − base, clean, M = 1 | decision |",
            "|---|---|---|---|---|---|---|",
        ]
        by_model: dict[str, list[str]] = defaultdict(list)
        for variant in variants:
            for model in models:
                every = paired_gains(m1, variant, AHL, model)
                if not every:
                    continue
                clean = paired_gains(m1, variant, AHL, model, set(CLEAN_AT_M1))
                by_model[model].append(
                    f"| {model} | `{variant}` | {interval_cell(clean)} | {interval_cell(every)} | "
                    f"{interval_cell(paired_gains(ten, variant, AHL, model, only=m1))} | "
                    f"{interval_cell(paired_gains(m1, variant, BASE, model, set(CLEAN_AT_M1)))} | {decide(clean, every)} |"
                )
        lines += [line for model in models for line in by_model[model]]
        lines += [
            "",
            "Conclusion per model (the rule: a variant becomes an M = 1 default only if it beats today's "
            "AHL and is not below the base model on the clean families):",
            "",
        ]
        lines += [conclusion(m1, model, variants) for model in models]
        lines += ["", "What each variant tests (an AHL default that could depend on M):", ""]
        lines += [f"- `{v}`: {DEFAULTS_TESTED.get(v, CONFIG_NOTE)}" for v in variants]
        lines += [
            "",
            "Not tested at M = 1, since they never touch the labelled anomalies: "
            + "; ".join(NOT_M_DEPENDENT)
            + ". HADG's split of the seen anomalies is the one rule that "
            'changes with M: with M = 1 the paper puts the anomaly in support and query (`single_anomaly="both"`, '
            "tested in `tests/ahl/test_hadg_one_anomaly.py`); issue 31 changed that default "
            "(`tests/ahl/test_single_anomaly_tasks.py`, `docs/benchmarks/ahl_m1_fix.md`).",
            "",
        ]
    return lines
