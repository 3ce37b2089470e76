"""``ahl fit``: fit a model on an OSAD split of a data set and save it."""

from __future__ import annotations

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
    from ahl_plugins.config import DETECTOR_KEYS, RUNTIME_KEYS, DetectorConfig
    from ahl_plugins.plugins import get_manager
    from ahl_plugins.resolve import trainer_options_model

    manager = get_manager()
    spec = manager.model(model)
    sections = [
        ("detector", DetectorConfig, DETECTOR_KEYS - {"model", "ahl", "extractor", "seed", *RUNTIME_KEYS}),
        ("trainer (AHL)" if ahl else "trainer (base loop)", trainer_options_model(ahl), None),
        (f"scorer {spec.scorer!r}", manager.get("scorers", spec.scorer).options, None),
        (f"loss {spec.loss!r}", manager.get("losses", spec.loss).options, None),
    ]
    from ahl_plugins.map_scoring import MapStatisticsOptions

    sections.append(
        ("map statistics (with map_statistics on; -o 'map_statistics_options={...}')", MapStatisticsOptions, None)
    )
    if finetune:
        from ahl_plugins.training.finetune import FINETUNE_ONLY_OPTIONS, FinetuneOptions

        only = ", ".join(sorted(FINETUNE_ONLY_OPTIONS))
        sections.append((f"fine-tuning (--finetune-option KEY=VALUE; {only} also by -o)", FinetuneOptions, None))
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
@click.option(
    "--extractor",
    default=None,
    help="A registered feature extractor (default: the model's), or a TorchScript file of your own network.",
)
@click.option("--ahl", "use_ahl", is_flag=True, help="Train with Anomaly Heterogeneity Learning.")
@click.option("--setting", type=click.Choice(["general", "hard"]), default="general", show_default=True)
@click.option("--anomaly-type", default=None, help="Seen anomaly type (hard setting).")
@click.option("--n-anomalies", type=int, default=10, show_default=True, help="Labelled anomalies M.")
@click.option(
    "--contamination",
    type=float,
    default=0.0,
    show_default=True,
    help="Unlabelled anomalies mixed into training normals.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--cache-dir", default=None, help="Feature cache (default: $AHL_CACHE_DIR or the user cache dir).")
@skip_bad_images_flag
@option_flag
@click.option(
    "--extractor-option",
    "extractor_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option for the feature extractor (repeatable), e.g. --extractor-option weights=none.",
)
@click.option(
    "--finetune-option",
    "finetune_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option for the fine-tuning stage of --finetune-backbone (repeatable), e.g. --finetune-option "
    "epochs=2. -o options always go to the trainer (the base loop, or AHL with --ahl).",
)
@own_network_flags
@data_option_flag
@click.option("--show-options", is_flag=True, help="List the options of --model (with --ahl: the AHL ones) and exit.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), help="Directory for the fitted model.")
@click.option("--overwrite", is_flag=True, help="Replace a model already saved in --output.")
def fit(
    data,
    model,
    extractor,
    use_ahl,
    setting,
    anomaly_type,
    n_anomalies,
    contamination,
    seed,
    device,
    cache_dir,
    skip_bad_images,
    options,
    extractor_options,
    finetune_options,
    extractor_weights,
    extractor_layers,
    finetune_backbone,
    data_options,
    show_options,
    output,
    overwrite,
) -> None:
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
        model,
        use_ahl,
        extractor,
        seed,
        device,
        cache_dir=cache_dir,
        progress=True,
        extractor_options=extractor_values,
        **({"finetune_backbone": True} if finetune_backbone else {}),
        **parse_key_values(options, "--option"),
        **({"finetune_options": parse_key_values(finetune_options, "--finetune-option")} if finetune_options else {}),
    )
    train = split.train_indices
    detector.fit(dataset.subset(train), split.train_labels, dataset.types[train])
    detector.save(output, extra_files={"split.json": split.to_dict()})
    info = detector.fit_info_
    click.echo(
        f"fitted {model}{' (backbone fine-tuned)' if finetune_backbone else ''}{' + AHL' if use_ahl else ''} on {info['n_normals']} normals and {info['n_seen']} labelled "
        f"anomalies ({', '.join(f'{t}: {c}' for t, c in info['seen_types'].items()) or 'none'}); saved to {output}"
    )
