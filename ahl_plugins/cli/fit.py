"""``ahl fit`` and ``ahl score``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click

from ahl_plugins.cli.options import (
    data_option_flag,
    extractor_options_for,
    option_flag,
    own_network_flags,
    parse_key_values,
)


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
            default = spec.train_options.get(name, field.default) if title.startswith("trainer") else field.default
            description = f"  {field.description}" if field.description else ""
            click.echo(f"  {name} = {default!r}{description}")


@click.command()
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
@click.option("--skip-bad-images", is_flag=True, help="Skip unreadable images and report them instead of failing.")
@option_flag
@click.option("--extractor-option", "extractor_options", multiple=True, metavar="KEY=VALUE",
              help="Option for the feature extractor (repeatable), e.g. --extractor-option weights=none.")
@own_network_flags
@data_option_flag
@click.option("--show-options", is_flag=True, help="List the options of --model (with --ahl: the AHL ones) and exit.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), help="Directory for the fitted model.")
def fit(data, model, extractor, use_ahl, setting, anomaly_type, n_anomalies, contamination, seed, device, cache_dir,
        skip_bad_images, options, extractor_options, extractor_weights, extractor_layers, finetune_backbone,
        data_options, show_options, output) -> None:
    """Fit a model on an OSAD split of DATA and save it to --output."""
    if show_options:
        _show_options(model, use_ahl, finetune_backbone)
        return
    if output is None:
        raise click.UsageError("--output is required")
    from ahl_plugins.data.load import load_dataset
    from ahl_plugins.data.protocols import make_split
    from ahl_plugins.data.tabular import refit_encoding
    from ahl_plugins.detector import OSADDetector

    extractor_values = extractor_options_for(
        extractor, model, extractor_weights, extractor_layers, parse_key_values(extractor_options, "--extractor-option")
    )
    loader_options = parse_key_values(data_options, "--data-option")
    if skip_bad_images:
        loader_options["skip_bad_images"] = True
    dataset = load_dataset(data, **loader_options)
    for skipped in dataset.skipped:
        click.echo(f"skipped unreadable image: {skipped}", err=True)
    split = make_split(dataset, setting, n_anomalies, anomaly_type, seed, contamination)
    if dataset.encoder is not None and dataset.raw_table is not None and not dataset.has_partition:
        dataset = refit_encoding(dataset, split.train_indices)
    detector = OSADDetector(
        model, use_ahl, extractor, seed, device, cache_dir=cache_dir, progress=True, extractor_options=extractor_values,
        **({"finetune_backbone": True} if finetune_backbone else {}), **parse_key_values(options, "--option"),
    )
    train = split.train_indices
    detector.fit(dataset.select_inputs(train), split.train_labels, dataset.types[train])
    detector.save(output)
    (output / "split.json").write_text(json.dumps(split.to_dict(), indent=2))
    if dataset.encoder is not None:
        (output / "encoder.json").write_text(json.dumps(dataset.encoder.to_dict(), indent=2))
    info = detector.fit_info_
    click.echo(
        f"fitted {model}{' (backbone fine-tuned)' if finetune_backbone else ''}{' + AHL' if use_ahl else ''} on {info['n_normals']} normals and {info['n_seen']} labelled "
        f"anomalies ({', '.join(f'{t}: {c}' for t, c in info['seen_types'].items()) or 'none'}); saved to {output}"
    )


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A directory written by `ahl fit`.")
@click.option("--data", "data", required=True, help="Data to score: a dataset folder scores every image under test/.")
@click.option("--device", default=None, help="Override the saved device.")
@click.option("--cache-dir", default=None)
@data_option_flag
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write.")
def score(model_dir, data, device, cache_dir, data_options, output) -> None:
    """Score DATA with a fitted model; one CSV row per input (id, score, label, type)."""
    from ahl_plugins.data.load import load_dataset
    from ahl_plugins.data.tabular import TabularEncoder
    from ahl_plugins.detector import OSADDetector
    from ahl_plugins.evaluation.metrics import auc_pr, auc_roc

    detector = OSADDetector.load(model_dir, device=device)
    if cache_dir is not None:
        detector.config.cache_dir = cache_dir
    dataset = load_dataset(data, **parse_key_values(data_options, "--data-option"))
    encoder_file = model_dir / "encoder.json"
    if encoder_file.is_file() and dataset.raw_table is not None:
        inputs = TabularEncoder.from_dict(json.loads(encoder_file.read_text())).transform(dataset.raw_table)
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
