"""``ahl score``: score a data set with a saved model, optionally writing anomaly maps and pixel metrics."""

from __future__ import annotations

import csv
from pathlib import Path

import click

from ahl_plugins.cli.options import data_option_flag, load_data, skip_bad_images_flag


def _refuse_overwriting_inputs(output: Path, data: str, model_dir: Path) -> None:
    """``--output`` must not be the data being scored nor a file of the model: writing it would destroy them."""
    target = output.expanduser().resolve()
    source = Path(data).expanduser()
    if source.exists() and target == source.resolve():
        raise click.UsageError(
            f"--output {output} is the input data itself; writing the scores would overwrite it. Choose another file"
        )
    if target.parent == model_dir.resolve() and target.exists():
        raise click.UsageError(f"--output {output} is a file of the model in {model_dir}; choose another file")
    if source.is_dir() and source.resolve() in target.parents and target.exists():
        raise click.UsageError(
            f"--output {output} is an existing file inside the data folder {data}; choose another file"
        )


def _deprecated_model_flag(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None:
        click.echo(
            "note: `ahl score --model DIR` is deprecated; use --model-dir DIR (in `ahl fit`, --model is a "
            "registered model name)",
            err=True,
        )
    return value


@click.command()
@click.option(
    "--model-dir",
    "model_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A directory written by `ahl fit`.",
)
@click.option(
    "--model",
    "old_model_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    callback=_deprecated_model_flag,
    hidden=True,
    help="Deprecated alias of --model-dir.",
)
@click.option("--data", "data", required=True, help="Data to score: a dataset folder scores every image under test/.")
@click.option("--device", default=None, help="cpu, cuda, cuda:N or auto (the model does not store one; default cpu).")
@click.option("--cache-dir", default=None, help="Feature cache (default: $AHL_CACHE_DIR or the user cache dir).")
@data_option_flag
@skip_bad_images_flag
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write.")
@click.option(
    "--maps",
    "maps_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write anomaly maps here: per image a PNG overlay and the raw .npy map, and index.html.",
)
@click.option(
    "--smooth",
    "sigma",
    type=float,
    default=0.0,
    show_default=True,
    help="Gaussian smoothing of the maps (sigma in input-image pixels; 0 = none).",
)
def score(
    model_dir, old_model_dir, data, device, cache_dir, data_options, skip_bad_images, output, maps_dir, sigma
) -> None:
    """Score DATA with a fitted model; one CSV row per input (id, score, label, type).

    With ground-truth masks (MVTec layout) it also reports pixel AUROC and AUPRO per anomaly type."""
    from ahl_plugins.detector import OSADDetector
    from ahl_plugins.evaluation.metrics import auc_pr, auc_roc
    from ahl_plugins.evaluation.overlays import write_dataset_maps
    from ahl_plugins.evaluation.pixel import pixel_table_by_type
    from ahl_plugins.evaluation.report import render

    model_dir = model_dir or old_model_dir
    if model_dir is None:
        raise click.UsageError("--model-dir is required: the directory `ahl fit --output` wrote")
    _refuse_overwriting_inputs(output, data, model_dir)
    runtime = {"cache_dir": cache_dir} if cache_dir is not None else {}
    detector = OSADDetector.load(model_dir, device=device, **runtime)
    dataset = load_data(data, data_options, skip_bad_images)
    if dataset.input_kind == "image" and dataset.has_partition:
        rows = [i for i in range(len(dataset)) if dataset.partition[i] == "test"]
    else:
        rows = list(range(len(dataset)))
    scores = detector.decision_function(dataset.subset(rows))
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "score", "label", "type"])
        for i, value in zip(rows, scores, strict=True):
            writer.writerow([dataset.ids[i], f"{value:.6g}", int(dataset.labels[i]), dataset.types[i]])
    labels = dataset.labels[rows]
    message = f"scored {len(rows)} inputs -> {output}"
    if 0 < labels.sum() < len(labels):
        message += f" (AUC-ROC {auc_roc(labels, scores):.3f}, AUC-PR {auc_pr(labels, scores):.3f})"
    click.echo(message)
    table = pixel_table_by_type(detector, dataset, rows, scores, sigma)
    if table is not None:
        click.echo(table.title)
        if table.rows:
            click.echo(render(["type", "image AUROC", "pixel AUROC", "AUPRO"], table.rows))
    if maps_dir is not None:
        index = write_dataset_maps(detector, dataset, rows, scores, maps_dir, sigma)
        click.echo(f"anomaly maps of {len(rows)} images -> {index}")
