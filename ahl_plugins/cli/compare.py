"""``ahl compare`` and ``ahl demo``: base vs base+AHL over seeds, splits and models.

torch and the evaluation code are imported inside the commands, so ``ahl
--help`` stays fast.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import click

from ahl_plugins.cli.options import extractor_options_for, own_network_flags, skip_bad_images_flag

DEMO_OUTPUT = "ahl-demo"
#: The demo's heads are tiny MLPs on 64 values: on a 2-core machine torch's default of 2 intra-op threads made
#: them up to ~60x slower (thread hand-offs dominate), so the demo runs single-threaded unless told otherwise.
#: Single-threaded, the models' full default training (the paper's 30 epochs x 20 batches) takes about a minute.
DEMO_THREADS = 1


def _key_values(values: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is read as JSON when it parses (numbers, true, null, lists)."""
    out: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=flag)
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        if not key:
            raise click.BadParameter(f"empty option name in {item!r}", param_hint=flag)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _comma(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _report(result: Any, started: float, extra: str = "") -> None:
    click.echo("")
    click.echo(result.table)
    click.echo("")
    counts = (
        f"{len(result.computed)} cells computed, {len(result.reused)} reused from an earlier run, "
        f"{len(result.skipped)} skipped, {len(result.failed)} failed"
    )
    click.echo(f"{counts}; {time.perf_counter() - started:.0f} s")
    output = result.output
    click.echo(f"results: {output / 'results.csv'}")
    click.echo(f"summary: {output / 'summary.md'} (and summary.json)")
    if result.plots:
        click.echo(f"plots:   {output / 'plots'}/ ({', '.join(p.name for p in result.plots)})")
    if (output / "index.html").is_file():
        click.echo(
            f"page:    {output / 'index.html'} (what was compared and the verdicts first, then the plots and tables)"
        )
    if extra:
        click.echo(extra)


def _run(config_values: dict[str, Any], output: str, *, plots: bool, quiet: bool, extra: str = "") -> None:
    from ahl_plugins.errors import AHLError, IgnoredFilesWarning
    from ahl_plugins.evaluation.compare import parse_config, run_compare

    started = time.perf_counter()
    try:
        config = parse_config(**config_values, progress=not quiet)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IgnoredFilesWarning)  # run_compare prints each ignored file
            result = run_compare(config, output, echo=click.echo, plots=plots)
    except AHLError as exc:
        raise click.ClickException(str(exc)) from None
    _report(result, started, extra)
    if result.failed:
        raise SystemExit(1)
    if result.rows and all(row.get("status") == "skipped" for row in result.rows):
        raise click.ClickException(
            f"every one of the {len(result.rows)} cells was skipped (the reasons are above and in results.csv): "
            "nothing was computed. Fix the data or the grid (e.g. a lower --n-anomalies) and run again"
        )


@click.command()
@click.option(
    "--data",
    "data",
    required=True,
    help="MVTec-style folder, .npz, .csv/.tsv(.gz), NSL-KDD folder, 'elpv' or 'digits'.",
)
@click.option("--models", default="devnet,dra", show_default=True, help="Comma-separated registered model names.")
@click.option("--setting", type=click.Choice(["general", "hard", "both"]), default="general", show_default=True)
@click.option(
    "--n-anomalies", default="10", show_default=True, help="Labelled anomalies M, comma-separated (e.g. 1,10)."
)
@click.option(
    "--anomaly-type",
    default="all",
    show_default=True,
    help="Hard setting: the seen type(s), comma-separated, or 'all' for one split per type.",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds 0..N-1; each draws its own split."
)
@click.option(
    "--train-seeds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Fit every split this many times with independent training seeds; reports training and split noise apart.",
)
@click.option(
    "--ablations",
    is_flag=True,
    help="Also run AHL without SGE (uniform), without HADG (random tasks) and as an ensemble.",
)
@click.option("--extractor", default=None, help="Registered feature extractor (default: each model's own).")
@click.option(
    "--extractor-option",
    "extractor_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Feature extractor option, e.g. image_size=224 (repeatable).",
)
@own_network_flags
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Override the training epochs (for a quick pass)."
)
@click.option(
    "--k", "k", type=click.IntRange(min=1), default=5, show_default=True, help="Neighbours of the k-NN reference row."
)
@click.option(
    "--references",
    default=None,
    help="Reference rows, comma-separated: kth (pooled k-NN, k-th neighbour), mean (pooled, mean of the "
    "k nearest), patchcore (nearest normal patch, images only); labelled (images, opt-in): patchcore_stats, "
    "patchcore_floor_stats (map statistics of the patchcore maps classified with the labels, alone / on the "
    "patchcore floor). Default: kth on vectors; kth, mean and patchcore on images.",
)
@click.option(
    "--coreset-fraction",
    type=click.FloatRange(min=0, max=1, min_open=True),
    default=0.1,
    show_default=True,
    help="Share of the training patches the patchcore row keeps (greedy k-center coreset).",
)
@click.option(
    "--option",
    "-o",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Detector option for every variant (repeatable).",
)
@click.option(
    "--ahl-option",
    "ahl_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option for the AHL variants only (repeatable).",
)
@click.option(
    "--data-option",
    "data_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option of the data loader, e.g. label_column=y.",
)
@skip_bad_images_flag
@click.option("--cache-dir", default=None, help="Feature cache (default: $AHL_CACHE_DIR or the user cache directory).")
@click.option(
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory for results; rerun with the same arguments to resume.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="torch CPU threads per running cell (default: torch's; with --jobs N, cores / N). 1 is often far faster "
    "for the small scoring heads on few cores.",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Local worker processes running cells at once; results are identical to --jobs 1 with the same --threads.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this machine (--jobs). ray: one Ray task per cell (pip install 'ahl-plugins[ray]').",
)
@click.option(
    "--ray-address",
    default=None,
    help="With --executor ray: an existing cluster (default: $RAY_ADDRESS, else a local Ray).",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def compare(
    data: str,
    models: str,
    setting: str,
    n_anomalies: str,
    anomaly_type: str,
    seeds: int,
    train_seeds: int,
    ablations: bool,
    extractor: str | None,
    extractor_options: tuple[str, ...],
    extractor_weights: str | None,
    extractor_layers: str | None,
    finetune_backbone: bool,
    device: str,
    epochs: int | None,
    k: int,
    references: str | None,
    coreset_fraction: float,
    options: tuple[str, ...],
    ahl_options: tuple[str, ...],
    data_options: tuple[str, ...],
    skip_bad_images: bool,
    cache_dir: str | None,
    output: str,
    threads: int | None,
    jobs: int,
    executor: str,
    ray_address: str | None,
    no_plots: bool,
    quiet: bool,
) -> None:
    """Compare each model with and without AHL on identical splits, seeds and features.

    Writes results.csv (one row per cell), summary.md/summary.json (mean ± std
    over seeds, paired gains with their 95% interval, verdict and the seeds
    needed to resolve ±0.01, per hard-setting type and their mean), cells/
    (test scores and AHL histories), plots/ and index.html. Every cell is
    saved when it finishes: run the same command again to resume an
    interrupted compare.
    """
    try:
        m_values = [int(v) for v in _comma(n_anomalies)]
    except ValueError:
        raise click.BadParameter(
            f"comma-separated whole numbers expected, got {n_anomalies!r}", param_hint="--n-anomalies"
        ) from None
    types = _comma(anomaly_type)
    path = Path(data).expanduser()
    values = {
        "data": str(path.resolve()) if path.exists() else data,
        "models": _comma(models),
        "settings": ["general", "hard"] if setting == "both" else [setting],
        "n_anomalies": m_values,
        "anomaly_types": None if types in ([], ["all"]) else types,
        "seeds": seeds,
        "train_seeds": train_seeds,
        "ablations": ablations,
        "extractor": extractor,
        "extractor_options": extractor_options_for(
            extractor,
            _comma(models)[0] if _comma(models) else "devnet",
            extractor_weights,
            extractor_layers,
            _key_values(extractor_options, "--extractor-option"),
        ),
        "finetune_backbone": finetune_backbone,
        "epochs": epochs,
        "k": k,
        "references": None if references is None else _comma(references),
        "coreset_fraction": coreset_fraction,
        "options": _key_values(options, "--option"),
        "ahl_options": _key_values(ahl_options, "--ahl-option"),
        "dataset_options": {
            **_key_values(data_options, "--data-option"),
            **({"skip_bad_images": True} if skip_bad_images else {}),
        },
        "device": device,
        "cache_dir": cache_dir,
        "threads": threads,
        "jobs": jobs,
        "executor": executor,
        "ray_address": ray_address,
    }
    _run(values, output, plots=not no_plots, quiet=quiet)


def demo_config(
    seeds: int = 3, device: str = "cpu", cache_dir: str | None = None, threads: int | None = DEMO_THREADS
) -> dict[str, Any]:
    """The demo's compare: DevNet and DRA, base vs AHL, hard setting on the digits split, default training."""
    from ahl_plugins.data.digits import DEMO_N_ANOMALIES, DEMO_SEEN_TYPE

    return {
        "data": "digits",
        "models": ["devnet", "dra"],
        "settings": ["hard"],
        "n_anomalies": [DEMO_N_ANOMALIES],
        "anomaly_types": [DEMO_SEEN_TYPE],
        "seeds": seeds,
        "device": device,
        "cache_dir": cache_dir,
        "threads": threads,
    }


@click.command()
@click.option("--output", default=DEMO_OUTPUT, show_default=True, type=click.Path(file_okay=False))
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--cache-dir", default=None, help="Feature cache (default: $AHL_CACHE_DIR or the user cache directory).")
@click.option(
    "--threads", type=click.IntRange(min=1), default=DEMO_THREADS, show_default=True, help="torch CPU threads."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def demo(output: str, seeds: int, device: str, cache_dir: str | None, threads: int, quiet: bool) -> None:
    """A small compare on scikit-learn's handwritten digits (no download): about a minute on 2 CPU cores.

    Normal = digits 0-6; anomaly types digit_7, digit_8, digit_9. Hard setting:
    10 labelled 7s for training, the test holds unseen 8s and 9s. DevNet and
    DRA, each without and with AHL, 3 seeds, plus the label-free k-NN row.
    """
    from ahl_plugins.data.digits import (
        ANOMALY_DIGITS,
        DEMO_N_ANOMALIES,
        DEMO_SEEN_TYPE,
        NORMAL_DIGITS,
    )

    unseen = [f"digit_{d}" for d in ANOMALY_DIGITS if f"digit_{d}" != DEMO_SEEN_TYPE]
    click.echo(
        f"ahl demo: digits {', '.join(map(str, NORMAL_DIGITS))} are normal; training sees {DEMO_N_ANOMALIES} labelled "
        f"{DEMO_SEEN_TYPE}; the test holds unseen {' and '.join(unseen)} (hard setting), {seeds} seeds."
    )
    click.echo(
        "Training: each model's defaults (the paper's 30 epochs of 20 batches), "
        f"{threads} CPU thread{'s' if threads != 1 else ''}; the same as "
        f"`ahl compare --data digits --setting hard --anomaly-type {DEMO_SEEN_TYPE} --threads {threads}`."
    )
    _run(
        demo_config(seeds, device, cache_dir, threads),
        output,
        plots=True,
        quiet=quiet,
        extra="ROC curves, per-type gains and the SGE task weights are PNGs in the plots folder above.",
    )
