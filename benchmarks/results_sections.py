"""The body of ``docs/results.md``: the best row against k-NN and DeepOD, then one section per compare run.

Each section shows the paper's tables (mean ± std over seeds), every paired gain with its interval,
verdict and MDE (the library's gain tables), the published numbers beside ours where a paper has
them, and one plain sentence per headline row saying what the interval allows one to conclude.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from ahl_plugins.evaluation.gain_tables import gain_sections
from ahl_plugins.evaluation.paper_tables import paper_tables, times_table
from ahl_plugins.evaluation.summary import METRICS
from ahl_plugins.evaluation.tables import fmt, gain_label, interval, signed
from benchmarks.compare_catalogue import Part
from benchmarks.harness import ROOT
from benchmarks.results_glance import Run, glance_rows

#: Published numbers (AHL paper, CVPR 2024; AUC-ROC, M = 10), quoted in ARCHITECTURE.md §5 and shared/data/README.md.
PAPER = {
    ("elpv", "general"): {"devnet": (0.843, 0.849), "dra": (0.843, 0.850)},
    ("elpv", "hard"): {"devnet": (0.722, 0.752), "dra": (0.771, 0.788)},
}
#: Measured outside this project with DeepOD 0.4.1 defaults on standardised features (ARCHITECTURE.md §6),
#: hard setting, M = 10, AUC-ROC, 3 seeds: context for our rows, not produced by this script.
EXTERNAL = {
    ("nsl_kdd", "DoS"): {"5-NN": 0.893, "DeepOD DevNet": 0.659, "DeepOD DeepSAD": 0.876},
    ("page_blocks", "class_2"): {"5-NN": 0.946, "DeepOD DevNet": 0.821, "DeepOD DeepSAD": 0.834},
    ("satimage", "class_5"): {"5-NN": 0.840, "DeepOD DevNet": 0.722, "DeepOD DeepSAD": 0.807},
    ("ann_thyroid", "class_2"): {"5-NN": 0.981, "DeepOD DevNet": 0.968, "DeepOD DeepSAD": 0.939},
}
FAMILIES = {
    "nsl_kdd": "NSL-KDD",
    "pmlb": "PMLB",
    "adbench": "ADBench embeddings",
    "mt": "Magnetic Tile",
    "elpv": "ELPV",
}
#: The best-row table and DeepOD's rows are for the headline M.
HEADLINE_M = 10


def family(part: Part) -> str:
    """The family a part belongs to (its name's prefix); a part of no known family is its own."""
    return next((title for prefix, title in FAMILIES.items() if part.name.startswith(prefix)), part.title)


def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT.parent))
    except ValueError:
        return str(path)


def _paper_rows(part: Part, summary: dict[str, Any]) -> list[str]:
    if part.paper is None:
        return []
    lines = [
        "",
        "Published (AHL paper, AUC-ROC, M = 10) beside ours:",
        "",
        "| setting | model | paper base | paper AHL | paper gain | ours base | ours AHL | ours gain [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for setting in ("general", "hard"):
        published = PAPER.get((part.paper[0], setting))
        if not published:
            continue
        seen = "all" if setting == "general" else "mean"
        for model, (base, ahl) in published.items():
            ours = {
                g["variant"]: g["auc_roc"]
                for g in summary["groups"]
                if g["model"] == model and g["setting"] == setting and g["n_anomalies"] == 10 and g["seen_type"] == seen
            }
            gain = next(
                (
                    g["auc_roc"]
                    for g in summary["gains"]
                    if g["model"] == model
                    and g["variant"] == "ahl"
                    and g["setting"] == setting
                    and g["n_anomalies"] == 10
                    and g["seen_type"] == seen
                ),
                None,
            )
            ours_gain = f"{signed(gain['mean'])} {interval(gain)}" if gain else "-"
            lines.append(
                f"| {setting} | {model} | {base:.3f} | {ahl:.3f} | {ahl - base:+.3f} | {fmt(ours.get('base'))} | "
                f"{fmt(ours.get('ahl'))} | {ours_gain} |"
            )
    return lines


def _external_rows(part: Part) -> list[str]:
    if part.external is None:
        return []
    hits = {seen: refs for (key, seen), refs in EXTERNAL.items() if key == part.external}
    if not hits:
        return []
    intro = (
        "For context, hard setting (M = 10) numbers measured outside this project with DeepOD 0.4.1 "
        "defaults on the same data (ARCHITECTURE.md §6), AUC-ROC:"
    )
    lines = ["", intro, ""]
    for seen, refs in hits.items():
        lines.append(f"- seen = {seen}: " + ", ".join(f"{k} {v:.3f}" for k, v in refs.items()))
    return lines


def statements(run: Run, models: list[str]) -> list[str]:
    """One sentence per headline row and model: the gain, its interval, the verdict, and k-NN against AHL."""
    ms = sorted({g["n_anomalies"] for g in run.summary["gains"]}, reverse=True)
    lines = []
    for m in ms:
        for row in glance_rows([run], models, m):
            for model, block in row.gains.items():
                where = f"{row.where}, M = {m}"
                mde = (
                    ""
                    if block.get("mde") is None
                    else f"; MDE {block['mde']:.3f}, {block['seeds_needed']} seeds would resolve ±0.01"
                )
                text = (
                    f"- {where}: {gain_label(model, 'ahl')} = {signed(block['mean'])} {interval(block)} over "
                    f"{block.get('n', 0)} seeds: **{block.get('verdict')}**{mde}"
                )
                ahl = row.ahl.get(model)
                if row.knn is not None and ahl is not None:
                    text += (
                        f"; the label-free k-NN ({row.knn:.3f}) is {'above' if row.knn > ahl else 'below'} "
                        f"AHL({model}) ({ahl:.3f})"
                    )
                lines.append(text + ".")
    return lines


def section(run: Run, models: list[str], arguments: dict[str, Any]) -> list[str]:
    """The page's section for one compare run."""
    part, summary = run.part, run.summary
    data = Path(arguments["data"])
    out = [
        f"Data `{rel(data) if data.exists() else arguments['data']}`, extractor "
        f"{arguments.get('extractor') or 'model default'}, {arguments['seeds']} seed(s), "
        f"epochs {arguments.get('epochs') or 'default (30)'}; compare directory `{rel(run.directory)}`.",
        "",
    ]
    if part.note:
        out += [part.note, ""]
    for metric in METRICS:
        for title, table in paper_tables(summary, metric, markdown=True):
            out += [f"**{title}**", "", table, ""]
    for title, table in gain_sections(summary, METRICS, markdown=True):
        out += [f"**{title}: 95% interval, verdict, MDE**", "", table, ""]
    out += _paper_rows(part, summary)
    out += _external_rows(part)
    said = statements(run, models)
    if said:
        out += ["", "What the intervals say:", "", *said]
    out += ["", "Times per cell:", "", times_table(summary, markdown=True), ""]
    if summary.get("skipped"):
        out += ["Skipped or failed cells:", ""]
        out += [
            f"- {p['status']}: {p['setting']} M = {p['n_anomalies']} seen = {p['seen_type']}: {p['reason']}"
            for p in summary["skipped"]
        ]
        out.append("")
    return out


def _headline_means(summary: dict[str, Any], setting: str) -> dict[str, float]:
    """Mean AUC-ROC per ``model/variant`` (``knn``) in the headline row of ``setting`` (M = 10)."""
    groups = [g for g in summary["groups"] if g["setting"] == setting and g["n_anomalies"] == HEADLINE_M]
    seen_types = {g["seen_type"] for g in groups}
    if not seen_types:
        return {}
    seen = "all" if setting == "general" else ("mean" if "mean" in seen_types else sorted(seen_types)[0])
    # label-free rows other than k-NN (e.g. patchcore, also of variant "knn") have no column here
    return {
        ("knn" if g["variant"] == "knn" else f"{g['model']}/{g['variant']}"): g["auc_roc"]["mean"]
        for g in groups
        if g["seen_type"] == seen
        and g["auc_roc"].get("mean") is not None
        and (g["variant"] != "knn" or g["model"] == "knn")
    }


def _peer_means(peers: list[dict[str, Any]], key: str, setting: str) -> dict[str, float]:
    """DeepOD's headline AUC-ROC per detector on one data set and setting (complete rows only)."""
    rows = [g for g in peers if g["data"] == key and g["setting"] == setting and g["n_anomalies"] == HEADLINE_M]
    seen_types = {g["seen_type"] for g in rows}
    seen = "all" if setting == "general" else ("mean" if "mean" in seen_types else min(seen_types, default=None))
    return {
        g["detector"]: g["auc_roc"]["mean"]
        for g in rows
        if g["seen_type"] == seen and g["detector"] != "5-NN" and g.get("complete", True)
    }


def best_rows(
    runs: list[Run],
    models: list[str],
    peers: list[dict[str, Any]],
    label_free: dict[tuple[str, str], tuple[str, float]] | None = None,
) -> list[str]:
    """Per family and setting: the best OSAD row against the label-free rows and DeepOD, averaged over data sets.

    ``label_free``: (part name, setting) -> (form, mean) of the strongest label-free form where more than the
    k-NN row was measured (images); elsewhere the k-NN row is the strongest label-free row.
    """
    label_free = label_free or {}
    table: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    forms: dict[tuple[str, str], set[str]] = defaultdict(set)
    for run in runs:
        for setting in ("general", "hard"):
            ours = _headline_means(run.summary, setting)
            osad = {k: v for k, v in ours.items() if k != "knn"}
            if "knn" not in ours or not osad:
                continue
            form, strongest = label_free.get((run.part.name, setting), ("5-NN k-th", ours["knn"]))
            forms[(family(run.part), setting)].add(form)
            entry = {"knn": ours["knn"], "label_free": max(strongest, ours["knn"]), "best": max(osad.values())}
            entry.update({f"{m}/{v}": osad[f"{m}/{v}"] for m in models for v in ("base", "ahl") if f"{m}/{v}" in osad})
            theirs = _peer_means(peers, run.part.name.replace("adbench_", "adbench_mvtec_", 1), setting)
            if theirs:
                entry["deepod_best"] = max(theirs.values())
                if "DevNet" in theirs:
                    entry["deepod_devnet"] = theirs["DevNet"]
            table[(family(run.part), setting)].append(entry)
    if not table:
        return []
    columns = (
        ["knn", "label_free", "best"]
        + [f"{m}/{v}" for m in models for v in ("base", "ahl")]
        + ["deepod_devnet", "deepod_best"]
    )
    names = {
        "knn": "k-NN",
        "label_free": "strongest label-free (form)",
        "best": "best OSAD row",
        "deepod_devnet": "DeepOD DevNet",
        "deepod_best": "best DeepOD",
    }
    head = [
        names.get(c, c.replace("/base", "").replace("/ahl", " + AHL").replace("devnet", "DevNet").replace("dra", "DRA"))
        for c in columns
    ]
    lines = [
        "## Best OSAD row against the strongest label-free row and DeepOD",
        "",
        "Mean AUC-ROC over the data sets of a family (M = 10; hard: each set's mean over seen types). *best OSAD "
        "row*: per data set the best of our four rows (DevNet, DRA, each with and without AHL), then averaged; "
        "*strongest label-free*: per data set the best of the label-free forms measured there (images: 5-NN k-th, "
        "5-NN mean and PatchCore-class, section *Images* below; vectors: the 5-NN row, whose forms differ by at "
        "most 0.023 there, `docs/benchmarks/image_references.md`), then averaged; "
        "DeepOD 0.4.1 (`docs/benchmarks/peers_deepod.md`) ran on the same splits of seeds 0-2 (the first three of ours); `-`: "
        "not run for that family; "
        "where it ran on only some of a family's sets, its mean there is shown beside ours on the same sets.",
        "",
        "| family | setting | sets | " + " | ".join(head) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for (name, setting), entries in sorted(table.items()):
        cells = []
        for c in columns:
            have = [e for e in entries if c in e]
            mean = sum(e[c] for e in have) / len(have) if have else None
            if mean is None:
                cells.append("-")
            elif c == "label_free":
                cells.append(f"{mean:.3f} ({', '.join(sorted(forms[(name, setting)]))})")
            elif len(have) == len(entries):
                cells.append(f"{mean:.3f}")
            else:  # DeepOD ran on some of the sets: its mean there, beside ours on the same sets
                ours = "best" if c == "deepod_best" else "devnet/base"
                same = sum(e.get(ours, float("nan")) for e in have) / len(have)
                label = "best OSAD row" if c == "deepod_best" else "our DevNet"
                cells.append(f"{mean:.3f} ({len(have)} of {len(entries)} sets; {label} there {same:.3f})")
        lines.append(f"| {name} | {setting} | {len(entries)} | " + " | ".join(cells) + " |")
    return lines + [""]
