"""``ahl fit`` and ``ahl score``."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ahl_plugins.cli.options import (
    OptionFlagCommand,
    data_option_flag,
    extractor_options_for,
    load_data,
    option_flag,
    own_network_flags,
    parse_key_values,
    skip_bad_images_flag,
)


def _default(name: str, field, bundled: Mapping[str, Any]) -> str:
    """How ``--show-options`` prints a default: the bundle's value, else the field's (factories called)."""
    if name in bundled:
        return repr(bundled[name])
    if field.is_required():
        return "(required)"
    return repr(field.get_default(call_default_factory=True))


def _show_options(model: str, ahl: bool, finetune: bool = False) -> None:
    from ahl_plugins.config import DetectorConfig
    from ahl_plugins.detector import DETECTOR_KEYS, _trainer_options_model
    from ahl_plugins.plugins import get_manager

    manager = get_manager()
    spec = manager.model(model)
    sections = [
        ("detector", DetectorConfig, DETECTOR_KEYS - {"model", "ahl", "extractor", "seed", "device"}),
        ("trainer (AHL)" if ahl else "trainer (base loop)", _trainer_options_model(ahl), None),
        (f"scorer {spec.scorer!r}", manager.get("scorers", spec.scorer).options, None),
        (f"loss {spec.loss!r}", manager.get("losses", spec.loss).options, None),
    ]
    if finetune:
        from ahl_plugins.training.finetune import FINETUNE_ONLY_OPTIONS, FinetuneOptions

        where = "finetune_options={...}; backbone_lr etc. also by name" if ahl else "with the trainer's options"
        sections.append((f"fine-tuning ({where})", FinetuneOptions, None if ahl else FINETUNE_ONLY_OPTIONS))
    for title, model_cls, keep in sections:
        click.echo(f"{title}:")
        if model_cls is None:
            click.echo("  (no options)")
            continue
        for name, field in model_cls.model_fields.items():
            if keep is not None and name not in keep:
                continue
            bundled = spec.train_options if title.startswith("trainer") else {}
            description = f"  {field.description}" if field.description else ""
            click.echo(f"  {name} = {_default(name, field, bundled)}{description}")


@click.command(cls=OptionFlagCommand)
@click.option("--data", "data", required=True, help="MVTec-style folder, .npz, .csv/.tsv(.gz), 'digits' or 'elpv'.")
@click.option("--model", default="devnet", show_default=True, help="A registered model (see `ahl plugins list --all`).")
@click.option("--extractor", default=None,
              help="A registered feature extractor (default: the model's), or a TorchScript file of your own network.")
@click.option("--ahl", "use_ahl", is_flag=True, help="Train with Anomaly Heterogeneity Learning.")
@click.option("--setting", type=click.Choice(["general", "hard"]), default="general", show_default=True)
@click.option("--anomaly-type", default=None, help="Seen anomaly type (hard setting).")
@click.option("--n-anomalies", type=int, default=10, show_default=True, help="Labelled anomalies M.")
@click.option("--contamination", type=float, default=0.0, show_default=True, help="Unlabelled anomalies mixed into training normals.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--cache-dir", default=None, help="Feature cache (default: $AHL_CACHE_DIR or the user cache dir).")
@skip_bad_images_flag
@option_flag
@click.option("--extractor-option", "extractor_options", multiple=True, metavar="KEY=VALUE",
              help="Option for the feature extractor (repeatable), e.g. --extractor-option weights=none.")
@own_network_flags
@data_option_flag
@click.option("--show-options", is_flag=True, help="List the options of --model (with --ahl: the AHL ones) and exit.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), help="Directory for the fitted model.")
@click.option("--overwrite", is_flag=True, help="Replace a model already saved in --output.")
def fit(data, model, extractor, use_ahl, setting, anomaly_type, n_anomalies, contamination, seed, device, cache_dir,
        skip_bad_images, options, extractor_options, extractor_weights, extractor_layers, finetune_backbone,
        data_options, show_options, output, overwrite) -> None:
    """Fit a model on an OSAD split of DATA and save it to --output.

    The split's test part is recorded in split.json but not needed: with as
    many labelled anomalies as the data hold, the model is fitted anyway.
    """
    if show_options:
        _show_options(model, use_ahl, finetune_backbone)
        return
    if output is None:
        raise click.UsageError("--output is required")
    from ahl_plugins.data.protocols import make_split
    from ahl_plugins.data.tabular import refit_encoding
    from ahl_plugins.detector import OSADDetector
    from ahl_plugins.model_files import CONFIG_FILE

    extractor_values = extractor_options_for(
        extractor, model, extractor_weights, extractor_layers, parse_key_values(extractor_options, "--extractor-option")
    )
    if (output / CONFIG_FILE).is_file() and not overwrite:
        raise click.UsageError(
            f"{output} already holds a saved model; pass --overwrite to replace it (only once the new fit "
            "succeeds), or choose another --output"
        )
    dataset = load_data(data, data_options, skip_bad_images)
    split = make_split(dataset, setting, n_anomalies, anomaly_type, seed, contamination, need_test=False)
    if dataset.encoder is not None and dataset.raw_table is not None and not dataset.has_partition:
        dataset = refit_encoding(dataset, split.train_indices)
    detector = OSADDetector(
        model, use_ahl, extractor, seed, device, cache_dir=cache_dir, progress=True, extractor_options=extractor_values,
        **({"finetune_backbone": True} if finetune_backbone else {}), **parse_key_values(options, "--option"),
    )
    train = split.train_indices
    detector.fit(dataset.select_inputs(train), split.train_labels, dataset.types[train])
    extra = {"split.json": split.to_dict()}
    if dataset.encoder is not None:
        extra["encoder.json"] = dataset.encoder.to_dict()
    detector.save(output, extra_files=extra)
    info = detector.fit_info_
    click.echo(
        f"fitted {model}{' (backbone fine-tuned)' if finetune_backbone else ''}{' + AHL' if use_ahl else ''} on {info['n_normals']} normals and {info['n_seen']} labelled "
        f"anomalies ({', '.join(f'{t}: {c}' for t, c in info['seen_types'].items()) or 'none'}); saved to {output}"
    )


def _refuse_overwriting_inputs(output: Path, data: str, model_dir: Path) -> None:
    """``--output`` must not be the data being scored nor a file of the model: writing it would destroy them."""
    target = output.expanduser().resolve()
    source = Path(data).expanduser()
    if source.exists() and target == source.resolve():
        raise click.UsageError(f"--output {output} is the input data itself; writing the scores would overwrite it. "
                               "Choose another file")
    if target.parent == model_dir.resolve() and target.exists():
        raise click.UsageError(f"--output {output} is a file of the model in {model_dir}; choose another file")
    if source.is_dir() and source.resolve() in target.parents and target.exists():
        raise click.UsageError(f"--output {output} is an existing file inside the data folder {data}; choose another file")


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A directory written by `ahl fit`.")
@click.option("--data", "data", required=True, help="Data to score: a dataset folder scores every image under test/.")
@click.option("--device", default=None, help="Override the saved device.")
@click.option("--cache-dir", default=None)
@data_option_flag
@skip_bad_images_flag
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write.")
@click.option("--maps", "maps_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Also write anomaly maps here: per image a PNG overlay and the raw .npy map, and index.html.")
@click.option("--smooth", "sigma", type=float, default=0.0, show_default=True,
              help="Gaussian smoothing of the maps (sigma in input-image pixels; 0 = none).")
def score(model_dir, data, device, cache_dir, data_options, skip_bad_images, output, maps_dir, sigma) -> None:
    """Score DATA with a fitted model; one CSV row per input (id, score, label, type).

    With ground-truth masks (MVTec layout) it also reports pixel AUROC and AUPRO per anomaly type."""
    from ahl_plugins.data.tabular import TabularEncoder
    from ahl_plugins.detector import OSADDetector
    from ahl_plugins.evaluation.metrics import auc_pr, auc_roc
    from ahl_plugins.model_files import read_json_file

    _refuse_overwriting_inputs(output, data, model_dir)
    detector = OSADDetector.load(model_dir, device=device)
    if cache_dir is not None:
        detector.config.cache_dir = cache_dir
    dataset = load_data(data, data_options, skip_bad_images)
    encoder_file = model_dir / "encoder.json"
    if encoder_file.is_file() and dataset.raw_table is not None:
        inputs = TabularEncoder.from_dict(read_json_file(encoder_file)).transform(dataset.raw_table)
    else:
        inputs = dataset.inputs
    rows = [i for i in range(len(dataset)) if dataset.partition[i] == "test"] if dataset.input_kind == "image" and dataset.has_partition else list(range(len(dataset)))
    selected = [inputs[i] for i in rows] if dataset.input_kind == "image" else inputs[rows]
    scores = detector.decision_function(selected)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "score", "label", "type"])
        for i, value in zip(rows, scores):
            writer.writerow([dataset.ids[i], f"{value:.6g}", int(dataset.labels[i]), dataset.types[i]])
    labels = dataset.labels[rows]
    message = f"scored {len(rows)} inputs -> {output}"
    if 0 < labels.sum() < len(labels):
        message += f" (AUC-ROC {auc_roc(labels, scores):.3f}, AUC-PR {auc_pr(labels, scores):.3f})"
    click.echo(message)
    from ahl_plugins.cli.maps import pixel_lines, write_maps

    for line in pixel_lines(detector, dataset, rows, scores, sigma):
        click.echo(line)
    if maps_dir is not None:
        index = write_maps(detector, dataset, rows, scores, maps_dir, sigma)
        click.echo(f"anomaly maps of {len(rows)} images -> {index}")
