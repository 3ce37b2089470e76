"""``ahl score``: score a data set with a saved model, optionally writing anomaly maps and pixel metrics."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

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
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Inputs scored (and written) at a time: memory stays flat however large the data.",
)
@click.option(
    "--maps-max-side",
    type=click.IntRange(min=16),
    default=None,
    help="Shrink each written map (aspect kept) so its longer side is at most this many pixels (default: the "
    "image's own size; a 4-megapixel map is 16 MB on disk).",
)
@click.option("--no-cache", is_flag=True, help="Do not write the features of the scored inputs to the feature cache.")
def score(
    model_dir,
    old_model_dir,
    data,
    device,
    cache_dir,
    data_options,
    skip_bad_images,
    output,
    maps_dir,
    sigma,
    chunk_size,
    maps_max_side,
    no_cache,
) -> None:
    """Score DATA with a fitted model; one CSV row per input (id, score, label, type).

    Inputs are read with the model's own read settings (bit depth, channels) and scored CHUNK-SIZE at a time,
    each chunk's rows written as they come; a run interrupted part-way resumes where it stopped when started
    again with the same model and data. The batch is compared with the model's data profile: differences are
    warned (DataDriftWarning) and the comparison is written beside the CSV (scores.csv -> scores.profile.json).
    With ground-truth masks (MVTec layout) it also reports pixel AUROC and AUPRO per anomaly type."""
    from ahl_plugins.cli.score_output import ScoreCsv, run_identity
    from ahl_plugins.detector import OSADDetector

    model_dir = model_dir or old_model_dir
    if model_dir is None:
        raise click.UsageError("--model-dir is required: the directory `ahl fit --output` wrote")
    _refuse_overwriting_inputs(output, data, model_dir)
    runtime = {"cache_dir": cache_dir} if cache_dir is not None else {}
    if no_cache:
        runtime["use_cache"] = False
    detector = OSADDetector.load(model_dir, device=device, **runtime)
    dataset = load_data(data, data_options, skip_bad_images)
    if dataset.input_kind == "image" and dataset.has_partition:
        rows = [i for i in range(len(dataset)) if dataset.partition[i] == "test"]
    else:
        rows = list(range(len(dataset)))
    table = ScoreCsv(output, run_identity(model_dir, data, data_options))
    try:
        _score_in_chunks(detector, dataset, rows, table, chunk_size, maps_dir, sigma, maps_max_side)
    except BaseException:
        table.close()
        raise
    table.finish()
    scores = np.asarray([table.done[dataset.ids[i]] for i in rows])
    _report(detector, dataset, rows, scores, output, table.resumed, sigma)
    if maps_dir is not None:
        from ahl_plugins.evaluation.overlays import dataset_map_entries, write_overlays

        index = write_overlays(
            maps_dir,
            dataset_map_entries(dataset, rows, scores),
            title=f"Anomaly maps: {dataset.name}",
            read=detector.read_settings_for(dataset),
        )
        click.echo(f"anomaly maps of {len(rows)} images -> {index}")


def _score_in_chunks(detector, dataset, rows, table, chunk_size, maps_dir, sigma, max_side) -> None:
    """Score the rows not yet in ``table``, ``chunk_size`` at a time, writing rows (and raw maps) per chunk."""
    from ahl_plugins.evaluation.overlays import write_raw_maps

    position = {i: n for n, i in enumerate(rows)}
    todo = [i for i in rows if dataset.ids[i] not in table.done]
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        part = dataset.subset(chunk)
        features = detector.features(part)
        scores = detector.scores_of(features)
        if maps_dir is not None:
            maps = detector.iter_anomaly_maps(part, sigma=sigma, max_side=max_side, features=features)
            write_raw_maps(maps_dir, [(position[i], dataset.ids[i]) for i in chunk], maps)
        table.write(
            [[dataset.ids[i], v, int(dataset.labels[i]), dataset.types[i]] for i, v in zip(chunk, scores, strict=True)]
        )


def _report(detector, dataset, rows, scores, output: Path, resumed: int, sigma: float) -> None:
    """What the user reads: counts and AUCs, the drift comparison (warned and written), pixel metrics."""
    import json

    from ahl_plugins.cli.score_output import profile_file
    from ahl_plugins.evaluation.metrics import auc_pr, auc_roc
    from ahl_plugins.evaluation.pixel import pixel_table_by_type
    from ahl_plugins.evaluation.report import render

    labels = dataset.labels[rows]
    message = f"scored {len(rows)} inputs -> {output}" + (
        f" ({resumed} kept from an interrupted run)" if resumed else ""
    )
    if 0 < labels.sum() < len(labels):
        message += f" (AUC-ROC {auc_roc(labels, scores):.3f}, AUC-PR {auc_pr(labels, scores):.3f})"
    click.echo(message)
    report = detector.drift_report(dataset.subset(rows), scores)
    document = {"model_read_settings": None, **report.to_dict()}
    if detector.read_settings_ is not None:
        document["model_read_settings"] = detector.read_settings_.to_dict()
    else:
        document["note"] = (
            "this model was saved before data profiles: inputs read by the data's own settings, no drift check; re-fit to get a profile"
        )
        click.echo("note: the model has no data profile (saved before profiles); no drift check", err=True)
    where = profile_file(output)
    where.write_text(json.dumps(document, indent=2, default=float))
    report.warn(f"{dataset.name} ({len(rows)} inputs)", stacklevel=2)
    if report.causes:
        click.echo(f"data drift: {len(report.causes)} cause(s), see {where}", err=True)
    table = pixel_table_by_type(detector, dataset, rows, scores, sigma)
    if table is not None:
        click.echo(table.title)
        if table.rows:
            click.echo(render(["type", "image AUROC", "pixel AUROC", "AUPRO"], table.rows))
