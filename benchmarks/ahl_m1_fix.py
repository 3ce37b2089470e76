"""Issue 31's validation page: AHL at M = 1 before and after the fix, and the guard at M = 1 and M = 10.

Usage::

    python -m benchmarks.ahl_m1_fix

Reads the rows of ``python -m benchmarks.ahl_validation`` (``benchmarks/results/validation``; the
configurations are ``ahl_m1_*`` and ``ahl_guard*`` in its ``CONFIGS``) and writes
``docs/benchmarks/ahl_m1_fix.md``: paired gains on the same (model, case, seed), mean [95% paired t interval]
and verdict, per family. Nothing is fitted here; the rows are made by the commands the page lists. The rule
(``docs/deviations.md``, M = 1 section): an M = 1 default is chosen on the families that stay clean at M = 1
(NSL-KDD's training file and digits, hard setting), becomes the default only if it beats today's AHL there,
is not below the base model there, and does not hurt over all families; the carved families may veto.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ahl_plugins.evaluation.significance import paired_interval
from benchmarks.ahl_validation import CONFIGS, DEFAULT_RESULTS, row_key
from benchmarks.harness import PAGES, SHARED_MACHINE, command, open_rows
from benchmarks.harness import write_page as write_markdown
from benchmarks.validation_splits import CLEAN_AT_M1

PAGE = PAGES / "ahl_m1_fix.md"
MODELS = ("devnet", "dra", "deepsad")
#: today's AHL before issue 31 (the paper's M = 1 tasks and outer steps), per model: measured as `ahl_p` for
#: the built-in models (6 seeds) and as `ahl_m1_both` (the same options) for the third-party example
OLD_AHL = {"devnet": "ahl_p", "dra": "ahl_p", "deepsad": "ahl_m1_both"}
BASE, FIX, GUARD = "base_p", "ahl_m1_fix", "ahl_guard"
#: the steps that led to the fix, each on top of the one before (DevNet, clean families)
LADDER = (
    "ahl_m1_query",
    "ahl_m1_query_support1",
    "ahl_m1_query_adapted",
    "ahl_m1_query_inner01",
    "ahl_m1_query_nopseudo",
    "ahl_m1_nopseudo_inner01",
    "ahl_m1_nopseudo_uniform",
    "ahl_m1_nopseudo_steps20",
)
Rows = dict[tuple, dict[str, Any]]


def gains(rows: Rows, config: str, reference: str, model: str, m: int, families: set[str] | None) -> list[float]:
    out = []
    for (c, mod, case, seed, mm), row in rows.items():
        if c != config or mod != model or mm != m or (families is not None and row["family"] not in families):
            continue
        ref = rows.get((reference, model, case, seed, m))
        if ref is not None:
            out.append(row["auc_roc"] - ref["auc_roc"])
    return out


def cell(values: list[float]) -> str:
    if len(values) < 2:
        return "-" if not values else f"{values[0]:+.3f} (n 1)"
    s = paired_interval(values)
    return f"{s['mean']:+.3f} [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}] {s['verdict']} (n {s['n']})"


def verdict(values: list[float]) -> str | None:
    return paired_interval(values)["verdict"] if len(values) > 1 else None


def mean_auc(rows: Rows, config: str, model: str, m: int, families: set[str], paired_with: str | None = None) -> str:
    vals = [
        r["auc_roc"]
        for (c, mod, case, seed, mm), r in rows.items()
        if c == config
        and mod == model
        and mm == m
        and r["family"] in families
        and (paired_with is None or (paired_with, model, case, seed, m) in rows)
    ]
    return f"{sum(vals) / len(vals):.3f}" if vals else "-"


def families_of(rows: Rows, m: int, model: str) -> list[str]:
    return sorted({r["family"] for k, r in rows.items() if k[4] == m and k[1] == model})


def decision(rows: Rows, model: str, config: str) -> str:
    """The rule for one model and candidate: beat today's AHL, not fall below the base, no veto from the rest."""
    clean = set(CLEAN_AT_M1)
    old = OLD_AHL[model]
    vs_old = gains(rows, config, old, model, 1, clean)
    vs_base = gains(rows, config, BASE, model, 1, clean)
    every_vs_old = gains(rows, config, old, model, 1, None)
    if len(vs_old) < 2 or len(vs_base) < 2:
        return f"- {model}, `{config}`: not measured on the clean families yet."
    text = f"- {model}, `{config}`: − today's AHL {cell(vs_old)}; − base {cell(vs_base)}. "
    if verdict(every_vs_old) == "hurts":
        return text + "**Vetoed: worse than today's AHL over all families.**"
    if verdict(vs_base) == "hurts":
        return text + "**Below the base model.**"
    if verdict(vs_old) == "helps":
        return text + "**Beats today's AHL and is not below the base: passes the rule.**"
    if verdict(vs_old) == "hurts":
        return text + "**Worse than today's AHL: vetoes.**"
    return text + "No detectable change from today's AHL and not below the base: no veto."


def guard_counts(rows: Rows, model: str, m: int) -> str:
    chosen = Counter(
        (r.get("guard") or {}).get("chosen", "?")
        for (c, mod, _case, _seed, mm), r in rows.items()
        if c == GUARD and mod == model and mm == m
    )
    return ", ".join(f"{k} {v}" for k, v in sorted(chosen.items())) or "-"


def page(rows: Rows) -> list[str]:
    clean = set(CLEAN_AT_M1)
    lines = [
        "# AHL at M = 1: the fix and the guard, on validation data (issue 31)",
        "",
        f"Generated by `{command('ahl_m1_fix')}` from the rows of `{command('ahl_validation')}` "
        "(`benchmarks/results/validation/`, the files `m1_fix_*` and `guard_*`); do not edit by hand. Validation "
        "splits carved from training data only (`benchmarks/validation_splits.py`). Cells: paired gain on the same "
        "model, case and seed, mean [95% paired t interval] verdict (n pairs). *Clean at M = 1*: "
        + ", ".join(CLEAN_AT_M1)
        + " (the only families that may choose an M = 1 default; the carved families may veto). Today's AHL "
        "before the fix: `ahl_p` (DevNet, DRA) or `ahl_m1_both` (the third-party DeepSAD example; the same "
        "options). Mean AUC columns: base, today's AHL and fix over the pairs the fix ran on; fix + guard over the "
        "pairs the guard ran on (n in its gain column). The cause is traced in `docs/when_ahl_hurts.md` (*One labelled anomaly*) and "
        "`docs/benchmarks/m1_trace.md`.",
        "",
        "Configurations:",
        "",
    ]
    used = sorted(
        {k[0] for k in rows} & ({BASE, FIX, GUARD, "ahl_m1_both", "ahl_guard_holdout", "ahl_p"} | set(LADDER))
    )
    lines += [f"- `{c}`: {CONFIGS[c][2]}" for c in used]
    lines += ["", "## M = 1, clean families: the fix against the base model and today's AHL", ""]
    lines += [
        "| model | family | base | today's AHL | fix | fix + guard | today's AHL − base | fix − base | fix − today's AHL "
        "| fix + guard − base |",
        "|---" * 10 + "|",
    ]
    for model in MODELS:
        fams = [f for f in families_of(rows, 1, model) if f in clean]
        for family in [*fams, None]:
            sel = clean if family is None else {family}
            name = "clean (both)" if family is None else family
            old = OLD_AHL[model]
            if not gains(rows, FIX, BASE, model, 1, sel) and not gains(rows, old, BASE, model, 1, sel):
                continue
            lines.append(
                f"| {model} | {name} | {mean_auc(rows, BASE, model, 1, sel, FIX)} | "
                f"{mean_auc(rows, old, model, 1, sel, FIX)} | {mean_auc(rows, FIX, model, 1, sel)} | "
                f"{mean_auc(rows, GUARD, model, 1, sel)} | {cell(gains(rows, old, BASE, model, 1, sel))} | "
                f"{cell(gains(rows, FIX, BASE, model, 1, sel))} | {cell(gains(rows, FIX, old, model, 1, sel))} | "
                f"{cell(gains(rows, GUARD, BASE, model, 1, sel))} |"
            )
    lines += ["", "The rule, per model:", ""]
    lines += [decision(rows, model, config) for config in (FIX, GUARD) for model in MODELS]
    lines += [
        "",
        "## M = 1, DevNet: the steps that led to the fix (clean families)",
        "",
        "Each step keeps the one before it; `ahl_m1_nopseudo_steps20` is the fix's options written out (the same "
        "numbers as `ahl_m1_fix` at M = 1).",
        "",
        "| variant | − base | − today's AHL |",
        "|---|---|---|",
    ]
    for variant in LADDER:
        vs_base = gains(rows, variant, BASE, "devnet", 1, clean)
        if vs_base:
            lines.append(
                f"| `{variant}` | {cell(vs_base)} | {cell(gains(rows, variant, 'ahl_p', 'devnet', 1, clean))} |"
            )
    lines += [
        "",
        "## M = 1, carved families (may veto, not choose)",
        "",
        "| model | family | fix − base | fix − today's AHL | fix + guard − base |",
        "|---|---|---|---|---|",
    ]
    for model in MODELS:
        for family in [f for f in families_of(rows, 1, model) if f not in clean]:
            sel = {family}
            if not gains(rows, FIX, BASE, model, 1, sel):
                continue
            lines.append(
                f"| {model} | {family} | {cell(gains(rows, FIX, BASE, model, 1, sel))} | "
                f"{cell(gains(rows, FIX, OLD_AHL[model], model, 1, sel))} | "
                f"{cell(gains(rows, GUARD, BASE, model, 1, sel))} |"
            )
    lines += [
        "",
        "## M = 10: the guard may not cost AHL's gains",
        "",
        "At M = 10 the fix changes nothing (HADG's M = 1 rule and `m1_outer_steps` act at M = 1 only), so AHL "
        "without the guard is `ahl_p`. The guard trains AHL and the base loop on 80% of the normals and pseudo "
        "anomalies, keeps AHL unless its held-out AUC is more than 0.05 below the base loop's, and refits the "
        "chosen model on all the data; its first form (`ahl_guard_holdout`) kept the model trained on 80%.",
        "",
        "| model | family | AHL − base | AHL + guard − base | guard − AHL | first form (no refit) − AHL | guard's choices |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in MODELS:
        for family in [*families_of(rows, 10, model), None]:
            sel = None if family is None else {family}
            with_guard = gains(rows, GUARD, BASE, model, 10, sel)
            if not with_guard:
                continue
            # today's AHL on the same (case, seed) pairs the guard ran on
            guarded = {(k[2], k[3]) for k in rows if k[0] == GUARD and k[1] == model and k[4] == 10}
            ahl = [
                rows[("ahl_p", model, case, seed, 10)]["auc_roc"] - rows[(BASE, model, case, seed, 10)]["auc_roc"]
                for case, seed in guarded
                if ("ahl_p", model, case, seed, 10) in rows
                and (BASE, model, case, seed, 10) in rows
                and (sel is None or rows[("ahl_p", model, case, seed, 10)]["family"] in sel)
            ]
            lines.append(
                f"| {model} | {family or 'all'} | {cell(ahl)} | {cell(with_guard)} | "
                f"{cell(gains(rows, GUARD, 'ahl_p', model, 10, sel))} | "
                f"{cell(gains(rows, 'ahl_guard_holdout', 'ahl_p', model, 10, sel))} | "
                f"{guard_counts(rows, model, 10) if family is None else ''} |"
            )
    lines += [
        "",
        "Guard choices at M = 1 (`ahl_guard`): "
        + "; ".join(f"{model}: {guard_counts(rows, model, 1)}" for model in MODELS)
        + ".",
        "",
    ]
    return lines


def page_from_rows(
    argv: list[str] | None, description: str, default_page: Path, build: Callable[[Rows], list[str]]
) -> int:
    """A page built from the ``ahl_validation`` rows on disk, fitting nothing (this page, the guard's tolerance)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--page", type=Path, default=default_page)
    args = parser.parse_args(argv)
    args.tag, args.report_only = "unused", True
    rows = open_rows(args, row_key)
    write_markdown(args.page, build(dict(rows.by_key)), machine=SHARED_MACHINE)
    return 0


def main(argv: list[str] | None = None) -> int:
    return page_from_rows(argv, __doc__.splitlines()[0], PAGE, page)


if __name__ == "__main__":
    raise SystemExit(main())
