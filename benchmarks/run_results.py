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

The page opens with one *At a glance* table per M found in those directories
(``benchmarks.results_glance``): per data set AHL's gain with its 95% paired
interval, verdict (helps / hurts / no detectable effect) and MDE, the tally of
verdicts per model, the seeds needed to resolve ±0.01, and the library's own
forest plot and critical-difference diagram (``docs/results_forest.png``,
``docs/results_cd.png``; ``..._M1.png`` for M = 1). One section per compare
follows (``benchmarks.results_sections``).

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
from pathlib import Path
from typing import Any

from benchmarks.compare_catalogue import Part, compare_parts
from benchmarks.harness import RESULTS, ROOT, SHARED_DATA, command
from benchmarks.peer_rows import PEER_ROWS, read_peer_rows
from benchmarks.results_glance import (
    EXPLAINED,
    Run,
    across_data_sets,
    forest,
    glance_rows,
    glance_table,
    seeds_needed,
    stale_note,
    tally,
    tally_line,
)
from benchmarks.results_references import image_references_section, strongest_label_free
from benchmarks.results_sections import HEADLINE_M, best_rows, rel, section

DEFAULT_DATA = SHARED_DATA
#: tracked (without each compare's cells/), so a fresh clone can rebuild the page or resume a run
DEFAULT_RUNS = RESULTS / "compare"
DEFAULT_PAGE = ROOT / "docs" / "results.md"


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
        "settings": [x for x in part.settings if x in args.settings],
        "n_anomalies": [m for m in part.n_anomalies if m in args.n_anomalies],
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


def asked_for(part: Part, args: argparse.Namespace) -> bool:
    """Whether ``--n-anomalies`` and ``--settings`` leave anything of this part to run (``--n-anomalies 10``
    must not run the M = 1 parts at their own M)."""
    return any(m in args.n_anomalies for m in part.n_anomalies) and any(x in args.settings for x in part.settings)


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

#: Families whose rows the "seeds to resolve ±0.01" table pools (part-name prefixes of the catalogue).
SEED_FAMILIES = {
    "embeddings (ADBench MVTec)": ("adbench",),
    "tabular (NSL-KDD, PMLB)": ("nsl_kdd", "pmlb"),
    "images (Magnetic Tile, ELPV)": ("mt", "elpv"),
}
DELONG_NOTE = (
    "The tracked compare directories keep no per-cell test scores (`cells/` is not tracked), so DeLong's test per "
    "seed is not shown on this page; a compare run with its `cells/` shows it in its own `summary.md`."
)


def picture_path(page: Path, kind: str, m: int) -> Path:
    """``docs/results_forest.png`` / ``docs/results_cd.png`` for the headline M, ``..._M1.png`` for another M."""
    return page.with_name(f"{page.stem}_{kind}" + ("" if m == HEADLINE_M else f"_M{m}") + ".png")


def glance_sections(runs: list[Run], args: argparse.Namespace) -> list[str]:
    """Per M present in the runs (the headline M first): the at-a-glance table, its tally, pictures, ranks."""
    ms = sorted(
        {g["n_anomalies"] for run in runs for g in run.summary["gains"] if g["variant"] == "ahl"},
        key=lambda m: (m != HEADLINE_M, -m),
    )
    out: list[str] = []
    for m in ms:
        rows = glance_rows(runs, args.models, m)
        if not rows:
            continue
        forest_png = forest(rows, args.models, picture_path(args.page, "forest", m), m)
        report_lines, cd_png = across_data_sets(
            [r for r in runs if any(x.run is r for x in rows)], m, picture_path(args.page, "cd", m)
        )
        seeds = sorted({b.get("n", 0) for row in rows for b in row.gains.values()})
        out += [
            f"## At a glance, M = {m}",
            "",
            f"AUC-ROC of AHL(model) (mean over {', '.join(map(str, seeds))} seeds) and its paired gain over the plain "
            f"model; k-NN needs no labels. {EXPLAINED}",
            "",
            *glance_table(rows, args.models),
            "",
            tally_line(tally(rows, args.models)),
            "",
            *stale_note(rows, args.models),
        ]
        if forest_png:
            out += [f"![AHL's gains at M = {m} with 95% intervals]({forest_png.name})", ""]
        out += [f"### Across data sets, M = {m}", "", *report_lines]
        if cd_png:
            out += [f"![Critical-difference diagram at M = {m}]({cd_png.name})", ""]
        out += [
            f"### Seeds to resolve ±0.01, M = {m}",
            "",
            "Per row, the seeds at which a two-sided 5% paired t test has 80% power for a true gain of 0.01 "
            "AUC-ROC, from the row's observed spread of gains; median (range) over the rows of a family.",
            "",
            *seeds_needed(rows, args.models, SEED_FAMILIES),
            "",
        ]
    return out


def write_page(parts: list[Part], args: argparse.Namespace, skipped: dict[str, str]) -> Path:
    from ahl_plugins.evaluation.combine import load_compare
    from ahl_plugins.evaluation.compare import machine_description

    args.page.parent.mkdir(parents=True, exist_ok=True)  # the pictures go beside the page
    out = [
        f"# {args.title}",
        "",
        (
            f"Generated by `{_command()}` from the compare runs under "
            f"`{rel(args.runs)}`; do not edit by hand. Each table: mean ± sample std over seeds; *gain* is the "
            "paired difference AHL − base on the same split and seed, read by its 95% interval and verdict; "
            "*k-NN* is the label-free 5-NN distance to the training normals on the same features (what a user "
            "without labels would get). Models use their registered defaults when they ran (DRA on images: the patch "
            "distance head since 2026-12-03, the pooled one before; *Images* says which its rows ran with); nothing "
            "was tuned on test data. " + DELONG_NOTE
        ),
        "",
        "Companion pages: `docs/results_finetune.md` (the paper's pipeline: fine-tuned backbones, then AHL), "
        "`docs/results_pixel.md` (anomaly maps: pixel AUROC / AUPRO on Magnetic Tile), `docs/results_previous.md` "
        "(the previous defaults' numbers, for before-and-after), `docs/benchmarks/peers_deepod.md` "
        "(DeepOD on the same splits), `docs/compare.md` (how to read a verdict). The defaults were chosen on "
        "validation data only: `docs/benchmarks/ahl_validation.md`.",
        "",
    ]
    sections: list[str] = []
    runs: list[Run] = []
    machine = None
    for part in parts:
        directory = _find_run(part, args)
        sections += [f"## {part.title}", ""]
        if part.name in skipped:
            sections += [f"Not run here: {skipped[part.name]}.", ""]
            continue
        if not (directory / "summary.json").is_file():
            sections += [
                f"Not run yet with the current defaults: no finished compare `{part.name}-s{args.seeds}*` under "
                f"`{rel(args.runs)}`. The numbers of the previous defaults are kept in `docs/results_previous.md`.",
                "",
            ]
            continue
        run = Run(part, directory, load_compare(directory).summary)
        runs.append(run)
        meta = json.loads((directory / "compare.json").read_text())
        machine = machine or meta.get("machine")
        sections += section(run, args.models, meta["arguments"])
    if runs:
        out += [
            *glance_sections(runs, args),
            *best_rows(runs, args.models, read_peer_rows(args.peers), strongest_label_free(runs)),
            *image_references_section(runs),
        ]
    out += sections
    machine = machine or machine_description()
    out += ["## Machine", "", *[f"- {k}: {v}" for k, v in (machine or {}).items()], ""]
    args.page.write_text("\n".join(out))
    return args.page


def _command() -> str:
    """The command that regenerates this page (the arguments given, less ``--report-only``)."""
    return command("run_results", (shlex.quote(a) for a in sys.argv[1:] if a != "--report-only"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default="", help="comma-separated benchmarks: mt, elpv, nsl_kdd, pmlb, adbench (default: all)"
    )
    parser.add_argument(
        "--n-anomalies",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 10],
        help="run only these M among each part's (default: all of them)",
    )
    parser.add_argument(
        "--settings",
        type=lambda v: v.split(","),
        default=["general", "hard"],
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
        "--page",
        type=Path,
        default=DEFAULT_PAGE,
        help="the Markdown page to write; a page other than docs/results.md holds only the --only benchmarks",
    )
    parser.add_argument("--title", default="Results: base vs base+AHL on real data", help="the page's heading")
    parser.add_argument(
        "--peers",
        type=Path,
        default=PEER_ROWS,
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
                if part.name in args.skip.split(",") or not asked_for(part, args):
                    continue
                run_part(part, args)
    on_page = parts if args.page.resolve() == DEFAULT_PAGE else [p for name in chosen for p in catalogue[name]]
    page = write_page(on_page, args, skipped)
    print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
