"""Regenerate ``docs/results.md`` from scratch: base vs base+AHL on real data.

Runs ``ahl compare`` (through its Python API) on the parts of ``benchmarks/compare_catalogue.py``:

* ``mt``: Magnetic Tile defects, MVTec layout, EfficientNet-Lite0 features:
  general setting with M = 10 and M = 1, hard setting (M = 10) with each type;
* ``elpv``: the papers' solar-cell set via ``pip install elpv-dataset`` (skipped
  when absent): general M = 10 and hard M = 10 with each module type;
* ``nsl_kdd``: NSL-KDD; general M = 10 and hard M = 10 with seen = DoS
  (the test keeps the unseen attack names of KDDTest+);
* ``pmlb``: ann_thyroid, page_blocks, satimage, shuttle with their class types;
  general M = 10 and hard M = 10 with each type;
* ``adbench``: ADBench's ResNet-18 embeddings of five MVTec AD categories
  (``shared/data/embeddings``), general M = 10,

each for DevNet and DRA, base and AHL, over 5 seeds, plus the k-NN row. Every
compare lives in its own directory under ``--runs`` and resumes when run
again; ``docs/results.md`` is rebuilt from whatever those directories hold,
so a partial run (``--only``) keeps the other sections that are on disk.

    python -m benchmarks.run_results                  # everything (hours on CPU)
    python -m benchmarks.run_results --only nsl_kdd --seeds 1 --threads 1   # a quick pass
    python -m benchmarks.run_results --report-only    # rebuild the page from the runs on disk

Nothing here tunes anything: every model runs with its registered defaults
(the paper's 30 epochs unless ``--epochs`` says otherwise), so no choice can
have been made on test data.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.compare_catalogue import Part, compare_parts
from benchmarks.harness import RESULTS, ROOT, SHARED_DATA, command
from benchmarks.peer_rows import PEER_ROWS, read_peer_rows

DEFAULT_DATA = SHARED_DATA
#: tracked (without each compare's cells/), so a fresh clone can rebuild the page or resume a run
DEFAULT_RUNS = RESULTS / "compare"
DEFAULT_PAGE = ROOT / "docs" / "results.md"

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


def _available(part: Part) -> str | None:
    """Why a part cannot run here, or None."""
    if part.needs:
        import importlib.util

        if importlib.util.find_spec(part.needs) is None:
            return f"needs the Python package providing {part.needs!r} (see shared/data/README.md)"
    if part.data and part.data not in ("elpv", "digits") and not Path(part.data).exists():
        return f"data not found at {part.data}"
    return None


def run_part(part: Part, args: argparse.Namespace) -> Path:
    from ahl_plugins.evaluation.compare import parse_config, run_compare

    values: dict[str, Any] = {
        "data": part.data,
        "models": args.models,
        "settings": [x for x in part.settings if x in args.settings] or part.settings,
        "n_anomalies": [m for m in part.n_anomalies if m in args.n_anomalies] or part.n_anomalies,
        "anomaly_types": part.anomaly_types,
        "seeds": args.seeds,
        "extractor": part.extractor,
        "epochs": args.epochs,
        "ablations": args.ablations,
        "dataset_options": part.dataset_options,
        "device": args.device,
        "cache_dir": args.cache_dir,
        "threads": args.threads,
        "jobs": args.jobs,
        "progress": True,
    }
    output = args.runs / _run_name(part, args)
    started = time.perf_counter()
    print(f"== {part.title}: {output}", flush=True)
    result = run_compare(parse_config(**values), output, echo=print)
    print(result.table, flush=True)
    print(f"== {part.title}: {time.perf_counter() - started:.0f} s", flush=True)
    return output


def _find_run(part: Part, args: argparse.Namespace) -> Path:
    """The run for these arguments; else, when only the report is rebuilt, the newest finished run of this
    part with the same seeds (e.g. a shorter ``--epochs`` pass), whose arguments the page then states."""
    exact = args.runs / _run_name(part, args)
    if exact.joinpath("summary.json").is_file() or not args.report_only:
        return exact
    candidates = sorted(
        (d for d in args.runs.glob(f"{part.name}-s{args.seeds}*") if d.joinpath("summary.json").is_file()),
        key=lambda d: d.joinpath("summary.json").stat().st_mtime,
    )
    return candidates[-1] if candidates else exact


def _run_name(part: Part, args: argparse.Namespace) -> str:
    suffix = f"-s{args.seeds}" + (f"-e{args.epochs}" if args.epochs else "") + ("-abl" if args.ablations else "")
    return part.name + suffix


# -- the page --------------------------------------------------------------------------


def _paper_rows(part: Part, summary: dict[str, Any]) -> list[str]:
    if part.paper is None:
        return []
    from ahl_plugins.evaluation.report import fmt

    lines = ["", "Published (AHL paper, AUC-ROC, M = 10) beside ours:", "",
             "| setting | model | paper base | paper AHL | paper gain | ours base | ours AHL | ours gain |",
             "|---|---|---|---|---|---|---|---|"]
    for setting in ("general", "hard"):
        published = PAPER.get((part.paper[0], setting))
        if not published:
            continue
        seen = "all" if setting == "general" else "mean"
        for model, (base, ahl) in published.items():
            ours = {
                g["variant"]: g["auc_roc"] for g in summary["groups"]
                if g["model"] == model and g["setting"] == setting and g["n_anomalies"] == 10 and g["seen_type"] == seen
            }
            gain = next((g["auc_roc"] for g in summary["gains"] if g["model"] == model and g["variant"] == "ahl"
                         and g["setting"] == setting and g["n_anomalies"] == 10 and g["seen_type"] == seen), None)
            lines.append(
                f"| {setting} | {model} | {base:.3f} | {ahl:.3f} | {ahl - base:+.3f} | {fmt(ours.get('base'))} | "
                f"{fmt(ours.get('ahl'))} | {fmt(gain, signed=True)} |"
            )
    return lines


def _external_rows(part: Part, summary: dict[str, Any]) -> list[str]:
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


def _effect(gain: dict[str, Any]) -> str:
    """"helps" / "hurts" when the mean paired gain is beyond one std over seeds (any sign with one seed), else "noise"."""
    noise = gain["std"] if gain.get("n", 0) > 1 and gain.get("std") is not None else 0.0
    return "helps" if gain["mean"] > noise else "hurts" if gain["mean"] < -noise else "noise"


def _verdict(summary: dict[str, Any]) -> list[str]:
    """Plain statements per headline row (general, or the mean over hard types): does AHL beat its
    base, and does the label-free k-NN beat AHL?"""
    groups = {(g["model"], g["variant"], g["setting"], g["n_anomalies"], g["seen_type"]): g for g in summary["groups"]}
    has_mean = {(g["setting"], g["n_anomalies"]) for g in summary["gains"] if g["seen_type"] == "mean"}
    lines = []
    for gain in summary["gains"]:
        setting, m, seen = gain["setting"], gain["n_anomalies"], gain["seen_type"]
        if gain["variant"] != "ahl" or (setting == "hard" and (setting, m) in has_mean and seen != "mean"):
            continue
        stat = gain["auc_roc"]
        if stat["mean"] is None:
            continue
        ahl = groups.get((gain["model"], "ahl", setting, m, seen), {}).get("auc_roc", {}).get("mean")
        knn = next((g["auc_roc"]["mean"] for k, g in groups.items() if k[1] == "knn" and k[2:] == (setting, m, seen)), None)
        where = f"{setting}, M = {m}" + ("" if seen == "all" else f", {'mean over seen types' if seen == 'mean' else 'seen ' + seen}")
        verb = {"helps": "helps", "hurts": "hurts", "noise": "is within noise for"}[_effect(stat)]
        spread = f"{stat['mean']:+.3f} ± {stat['std']:.3f} over {stat['n']} seeds" if stat["n"] > 1 else f"{stat['mean']:+.3f}, 1 seed"
        text = f"- {where}: AHL {verb} {gain['model']} ({spread} AUC-ROC)"
        if knn is not None and ahl is not None:
            text += f"; the label-free k-NN ({knn:.3f}) is {'above' if knn > ahl else 'below'} AHL({gain['model']}) ({ahl:.3f})"
        lines.append(text + ".")
    return lines


def _headline_rows(
    part: Part, summary: dict[str, Any], models: list[str], tally: dict[str, list[tuple[str, float, int]]]
) -> list[str]:
    """One row per headline setting (general M = 10; hard M = 10 averaged over seen types): AHL gain per model.

    ``tally[model]`` collects each row's :func:`_effect`, mean gain and number of seeds.
    """
    from ahl_plugins.evaluation.report import fmt

    rows = []
    for setting in ("general", "hard"):
        gains = [g for g in summary["gains"] if g["variant"] == "ahl" and g["setting"] == setting and g["n_anomalies"] == 10]
        seen_types = {g["seen_type"] for g in gains}
        if not seen_types:
            continue
        seen = "all" if setting == "general" else ("mean" if "mean" in seen_types else sorted(seen_types)[0])
        cells = []
        for model in models:
            gain = next((g["auc_roc"] for g in gains if g["model"] == model and g["seen_type"] == seen), None)
            ahl = next((g["auc_roc"] for g in summary["groups"] if g["model"] == model and g["variant"] == "ahl"
                        and g["setting"] == setting and g["n_anomalies"] == 10 and g["seen_type"] == seen), None)
            cells.append(f"{fmt(ahl)} ({fmt(gain, signed=True)})" if gain else "-")
            if gain and gain.get("mean") is not None:
                tally.setdefault(model, []).append((_effect(gain), gain["mean"], gain.get("n", 1)))
        knn = next((g["auc_roc"] for g in summary["groups"] if g["variant"] == "knn" and g["setting"] == setting
                    and g["n_anomalies"] == 10 and g["seen_type"] == seen), None)
        where = setting if seen == "all" else f"{setting} ({'mean over types' if seen == 'mean' else 'seen ' + seen})"
        rows.append(f"| {part.title.split(',')[0]} | {where} | " + " | ".join(cells) + f" | {fmt(knn)} |")
    return rows


FAMILIES = {"nsl_kdd": "NSL-KDD", "pmlb": "PMLB", "adbench": "ADBench embeddings", "mt": "Magnetic Tile", "elpv": "ELPV"}


def _family(part: Part) -> str:
    return next(title for prefix, title in FAMILIES.items() if part.name.startswith(prefix))


def _peer_key(part: Part) -> str:
    return part.name.replace("adbench_", "adbench_mvtec_", 1)


def _headline_means(summary: dict[str, Any], setting: str) -> dict[str, float]:
    """Mean AUC-ROC per ``model/variant`` (``knn``) in the headline row of ``setting`` (M = 10)."""
    groups = [g for g in summary["groups"] if g["setting"] == setting and g["n_anomalies"] == 10]
    seen_types = {g["seen_type"] for g in groups}
    if not seen_types:
        return {}
    seen = "all" if setting == "general" else ("mean" if "mean" in seen_types else sorted(seen_types)[0])
    out = {}
    for g in groups:
        if g["seen_type"] == seen and g["auc_roc"].get("mean") is not None:
            out["knn" if g["variant"] == "knn" else f"{g['model']}/{g['variant']}"] = g["auc_roc"]["mean"]
    return out


def _peer_means(peers: list[dict[str, Any]], key: str, setting: str) -> dict[str, float]:
    """DeepOD's headline AUC-ROC per detector on one data set and setting (complete rows only)."""
    rows = [g for g in peers if g["data"] == key and g["setting"] == setting and g["n_anomalies"] == 10]
    seen_types = {g["seen_type"] for g in rows}
    seen = "all" if setting == "general" else ("mean" if "mean" in seen_types else min(seen_types, default=None))
    return {g["detector"]: g["auc_roc"]["mean"] for g in rows
            if g["seen_type"] == seen and g["detector"] != "5-NN" and g.get("complete", True)}


def _best_rows(rows: list[tuple[Part, dict[str, Any]]], models: list[str], peers: list[dict[str, Any]]) -> list[str]:
    """Per family and setting: the best OSAD row against the label-free k-NN and DeepOD, averaged over data sets."""
    table: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for part, summary in rows:
        for setting in ("general", "hard"):
            ours = _headline_means(summary, setting)
            if "knn" not in ours:
                continue
            osad = {k: v for k, v in ours.items() if k != "knn"}
            if not osad:
                continue
            theirs = _peer_means(peers, _peer_key(part), setting)
            entry = {"knn": ours["knn"], "best": max(osad.values())}
            for model in models:
                for variant in ("base", "ahl"):
                    if f"{model}/{variant}" in osad:
                        entry[f"{model}/{variant}"] = osad[f"{model}/{variant}"]
            if theirs:
                entry["deepod_best"] = max(theirs.values())
                if "DevNet" in theirs:
                    entry["deepod_devnet"] = theirs["DevNet"]
            table[(_family(part), setting)].append(entry)
    if not table:
        return []
    columns = ["knn", "best"] + [f"{m}/{v}" for m in models for v in ("base", "ahl")] + ["deepod_devnet", "deepod_best"]
    names = {"knn": "k-NN", "best": "best OSAD row", "deepod_devnet": "DeepOD DevNet", "deepod_best": "best DeepOD"}
    head = [names.get(c, c.replace("/base", "").replace("/ahl", " + AHL").replace("devnet", "DevNet")
                      .replace("dra", "DRA")) for c in columns]
    lines = [
        "## Best OSAD row against the label-free k-NN and DeepOD",
        "",
        "Mean AUC-ROC over the data sets of a family (M = 10; hard: each set's mean over seen types). *best OSAD "
        "row*: per data set the best of our four rows (DevNet, DRA, each with and without AHL), then averaged; "
        "DeepOD 0.4.1 (`docs/benchmarks/peers.md`) ran on the same splits of seeds 0-2 (the first three of ours); `-`: "
        "not run for that family; "
        "where it ran on only some of a family's sets, its mean there is shown beside ours on the same sets.",
        "",
        "| family | setting | sets | " + " | ".join(head) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for (family, setting), entries in sorted(table.items()):
        cells = []
        for c in columns:
            have = [e for e in entries if c in e]
            mean = sum(e[c] for e in have) / len(have) if have else None
            if mean is None:
                cells.append("-")
            elif len(have) == len(entries):
                cells.append(f"{mean:.3f}")
            else:  # DeepOD ran on some of the sets: its mean there, beside ours on the same sets
                ours = "best" if c == "deepod_best" else "devnet/base"
                same = sum(e.get(ours, float("nan")) for e in have) / len(have)
                label = "best OSAD row" if c == "deepod_best" else "our DevNet"
                cells.append(f"{mean:.3f} ({len(have)} of {len(entries)} sets; {label} there {same:.3f})")
        lines.append(f"| {family} | {setting} | {len(entries)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _tally_line(tally: dict[str, list[tuple[str, float, int]]]) -> str:
    """Per model: how many rows AHL helps or hurts beyond one std, its mean gain over rows, and what chance gives."""
    from ahl_plugins.evaluation.report import chance_beyond_one_std

    parts = []
    for model, rows in tally.items():
        verdicts = [v for v, _, _ in rows]
        means = [m for _, m, _ in rows]
        parts.append(
            f"AHL({model}) gains beyond one std in {verdicts.count('helps')} of {len(rows)} rows, loses beyond it in "
            f"{verdicts.count('hurts')}, and is within noise in {verdicts.count('noise')}; its mean paired gain over "
            f"the {len(rows)} rows is {sum(means) / len(means):+.3f} ({sum(m > 0 for m in means)} rows above zero)"
        )
    if not parts:
        return ""
    seeds = {n for rows in tally.values() for _, _, n in rows}
    chance = chance_beyond_one_std(next(iter(seeds))) if len(seeds) == 1 else None
    if chance is None:  # rows over different numbers of seeds, or one seed: no single figure to quote
        return "; ".join(parts) + "."
    expected = chance * max(len(rows) for rows in tally.values())
    return (
        "; ".join(parts)
        + f". For scale: with no effect at all, a row lands more than one std below zero by noise alone with "
        f"probability {chance:.2f} at {next(iter(seeds))} seeds (and as often above), so about {expected:.1f} losing "
        "rows per model are expected by chance."
    )


def write_page(parts: list[Part], args: argparse.Namespace, skipped: dict[str, str]) -> Path:
    from ahl_plugins.evaluation.compare import machine_description
    from ahl_plugins.evaluation.report import METRICS, paper_tables, times_table

    out = [
        f"# {args.title}",
        "",
        (
            f"Generated by `{_command()}` from the compare runs under "
            f"`{_rel(args.runs)}`; do not edit by hand. Each table: mean ± sample std over seeds; *gain* is the "
            "paired difference AHL − base on the same split and seed; *k-NN* is the label-free 5-NN distance to the "
            "training normals on the same features (what a user without labels would get). Models use their "
            "registered defaults; nothing was tuned on test data."
        ),
        "",
        "Companion pages: `docs/results_finetune.md` (the paper's pipeline: fine-tuned backbones, then AHL), "
        "`docs/results_pixel.md` (anomaly maps: pixel AUROC / AUPRO on Magnetic Tile), `docs/results_previous.md` "
        "(the previous defaults' numbers, for before-and-after), `docs/benchmarks/peers.md` "
        "(DeepOD on the same splits). The defaults were chosen on validation data only: "
        "`docs/benchmarks/ahl_validation.md`.",
        "",
    ]
    headline = [
        "## At a glance",
        "",
        "AUC-ROC of AHL(model), with its paired gain over the plain model in brackets, M = 10; k-NN needs no labels.",
        "",
        "| data | setting | " + " | ".join(f"AHL({m}) (gain)" for m in args.models) + " | k-NN |",
        "|---|---|" + "---|" * len(args.models) + "---|",
    ]
    out_sections: list[str] = []
    tally: dict[str, list[tuple[str, float, int]]] = {}
    runs_meta = []
    summaries: list[tuple[Part, dict[str, Any]]] = []
    for part in parts:
        directory = _find_run(part, args)
        summary_path = directory / "summary.json"
        out_sections += [f"## {part.title}", ""]
        if part.name in skipped:
            out_sections += [f"Not run here: {skipped[part.name]}.", ""]
            continue
        if not summary_path.is_file():
            out_sections += [
                "Not run yet with the current defaults (no results on disk for these arguments). The numbers of the "
                "previous defaults are kept in `docs/results_previous.md`.",
                "",
            ]
            continue
        summary = json.loads(summary_path.read_text())
        summaries.append((part, summary))
        meta = json.loads((directory / "compare.json").read_text())
        runs_meta.append((part, meta))
        headline += _headline_rows(part, summary, args.models, tally)
        arguments = meta["arguments"]
        out_sections += [
            (
                f"Data `{_rel(Path(arguments['data'])) if Path(arguments['data']).exists() else arguments['data']}`, "
                f"extractor {arguments.get('extractor') or 'model default'}, {arguments['seeds']} seed(s), "
                f"epochs {arguments.get('epochs') or 'default (30)'}."
            ),
            "",
        ]
        if part.note:
            out_sections += [part.note, ""]
        for metric in METRICS:
            for title, table in paper_tables(summary, metric, markdown=True):
                out_sections += [f"**{title}**", "", table, ""]
        out_sections += _paper_rows(part, summary)
        out_sections += _external_rows(part, summary)
        verdict = _verdict(summary)
        if verdict:
            out_sections += ["", "What the numbers say:", "", *verdict]
        out_sections += ["", "Times per cell:", "", times_table(summary, markdown=True), ""]
        if summary.get("skipped"):
            out_sections += ["Skipped or failed cells:", ""]
            out_sections += [
                f"- {p['status']}: {p['setting']} M = {p['n_anomalies']} seen = {p['seen_type']}: {p['reason']}"
                for p in summary["skipped"]
            ]
            out_sections.append("")
    if runs_meta:
        best = _best_rows(summaries, args.models, read_peer_rows(args.peers))
        out += [*headline, "", _tally_line(tally), "", *best, *out_sections]
    else:
        out += out_sections
    machine = runs_meta[0][1].get("machine") if runs_meta else machine_description()
    out += ["## Machine", "", *[f"- {k}: {v}" for k, v in (machine or {}).items()], ""]
    args.page.parent.mkdir(parents=True, exist_ok=True)
    args.page.write_text("\n".join(out))
    return args.page


def _command() -> str:
    """The command that regenerates this page (the arguments given, less ``--report-only``)."""
    return command("run_results", (shlex.quote(a) for a in sys.argv[1:] if a != "--report-only"))


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT.parent))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default="", help="comma-separated benchmarks: mt, elpv, nsl_kdd, pmlb, adbench (default: all)"
    )
    parser.add_argument(
        "--n-anomalies", type=lambda v: [int(x) for x in v.split(",")], default=[1, 10],
        help="run only these M among each part's (default: all of them)",
    )
    parser.add_argument(
        "--settings", type=lambda v: v.split(","), default=["general", "hard"],
        help="run only these settings among each part's (default: both)",
    )
    parser.add_argument("--skip", default="", help="comma-separated part names not to run now (e.g. pmlb_shuttle)")
    parser.add_argument("--models", default="devnet,dra")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="override the training epochs (quick pass)")
    parser.add_argument("--ablations", action="store_true", help="also run AHL's ablations")
    parser.add_argument("--jobs", type=int, default=1, help="cells of one compare run at once (local processes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 is much faster for the heads on few cores)"
    )
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="where the compare directories go")
    parser.add_argument(
        "--page", type=Path, default=DEFAULT_PAGE,
        help="the Markdown page to write; a page other than docs/results.md holds only the --only benchmarks",
    )
    parser.add_argument("--title", default="Results: base vs base+AHL on real data", help="the page's heading")
    parser.add_argument(
        "--peers", type=Path, default=PEER_ROWS,
        help="DeepOD's headline rows written by benchmarks.peers, shown beside ours (absent: no DeepOD columns)",
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the page from runs on disk; run nothing")
    args = parser.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    catalogue = compare_parts(args.data_root)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()] or list(catalogue)
    unknown = [b for b in chosen if b not in catalogue]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(catalogue)}")
    parts = [part for name in catalogue for part in catalogue[name]]
    skipped: dict[str, str] = {}
    for part in parts:
        reason = _available(part)
        if reason:
            skipped[part.name] = reason
    if not args.report_only:
        for name in chosen:
            for part in catalogue[name]:
                if part.name in skipped:
                    print(f"== {part.title}: skipped, {skipped[part.name]}", flush=True)
                    continue
                if part.name in args.skip.split(","):
                    continue
                run_part(part, args)
    on_page = parts if args.page.resolve() == DEFAULT_PAGE else [p for name in chosen for p in catalogue[name]]
    page = write_page(on_page, args, skipped)
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
