"""Parsing repeated ``KEY=VALUE`` options shared by several commands."""

from __future__ import annotations

import json
import warnings
from typing import Any

import click


def parse_key_values(values: tuple[str, ...], flag: str) -> dict[str, Any]:
    """``("epochs=5", "name=x")`` -> ``{"epochs": 5, "name": "x"}``; values are JSON when they parse."""
    parsed: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=flag)
        try:
            parsed[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.strip()] = raw
    return parsed


option_flag = click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Detector, trainer, scorer or loss option (repeatable), e.g. -o epochs=10. See --show-options.",
)
data_option_flag = click.option(
    "--data-option",
    "data_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Option for the data loader (repeatable), e.g. --data-option label_column=target.",
)
skip_bad_images_flag = click.option(
    "--skip-bad-images",
    is_flag=True,
    help="Skip unreadable images (and report them) instead of failing; image folders only.",
)


def load_data(data: str, data_options: tuple[str, ...], skip_bad_images: bool = False):
    """The dataset a command reads, with every skipped or ignored file reported on stderr."""
    from ahl_plugins.data.load import load_dataset
    from ahl_plugins.errors import IgnoredFilesWarning

    options = parse_key_values(data_options, "--data-option")
    if skip_bad_images:
        options["skip_bad_images"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IgnoredFilesWarning)  # listed below, one line per file
        dataset = load_dataset(data, **options)
    for skipped in dataset.skipped:
        click.echo(f"skipped {skipped}", err=True)
    return dataset


def _option_names() -> tuple[frozenset[str], frozenset[str]]:
    """(detector and base-loop option names, AHL-only option names): what ``-o`` takes whatever the model."""
    from ahl_plugins.ahl.options import AHLOptions
    from ahl_plugins.config import DETECTOR_KEYS
    from ahl_plugins.training.options import TrainOptions

    base = DETECTOR_KEYS | frozenset(TrainOptions.model_fields)
    return base, frozenset(AHLOptions.model_fields) - base


def _flag_value(flag: str, args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args) and not args[i + 1].startswith("-"):
            return args[i + 1]
    return "VALUE"


class OptionFlagCommand(click.Command):
    """A command taking model options through ``-o KEY=VALUE``: ``--epochs 1`` gets the hint ``-o epochs=1``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        original = list(args)
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            key = exc.option_name.lstrip("-").replace("-", "_")
            base, ahl_only = _option_names()
            if key not in base | ahl_only:
                raise
            needs = " (an AHL option: add --ahl)" if key in ahl_only else ""
            raise click.NoSuchOption(
                exc.option_name,
                message=f"No such option '{exc.option_name}'. Detector and trainer options go through -o: "
                f"-o {key}={_flag_value(exc.option_name, original)}{needs}; --show-options lists them",
                ctx=ctx,
            ) from None


def own_network_flags(command):
    """``--extractor-weights`` / ``--extractor-layers`` / ``--finetune-backbone``: shared by fit and compare."""
    command = click.option(
        "--finetune-backbone",
        is_flag=True,
        help="Train the backbone end to end with the heads first (images); AHL then runs on its frozen features.",
    )(command)
    command = click.option(
        "--extractor-layers",
        default=None,
        metavar="NAME[,NAME]",
        help="Layer(s) to read: torchvision stages (layer3,layer4), EfficientNet taps (stride16), or the dict "
        "keys / submodule names of your own TorchScript network.",
    )(command)
    return click.option(
        "--extractor-weights",
        default=None,
        type=click.Path(exists=True, dir_okay=False),
        help="State dict (.safetensors, or a tensors-only .pt) of your own trained network, for the registered "
        "architecture named by --extractor (e.g. --extractor resnet18). Never unpickled.",
    )(command)


def extractor_options_for(
    extractor: str | None, model: str, weights: str | None, layers: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    """Fold ``--extractor-weights`` and ``--extractor-layers`` into the extractor's own option names."""
    options = dict(options)
    if weights is None and layers is None:
        return options
    from ahl_plugins.features.module_extractor import is_torchscript_path
    from ahl_plugins.plugins import get_manager

    names = [v.strip() for v in (layers or "").split(",") if v.strip()]
    if extractor is not None and is_torchscript_path(extractor):
        if weights is not None:
            raise click.BadParameter(
                "a TorchScript file carries its own weights; --extractor-weights is for a registered architecture",
                param_hint="--extractor-weights",
            )
        options["layers"] = names
        return options
    manager = get_manager()
    name = extractor or manager.model(model).image_extractor
    options_model = manager.get("feature_extractors", name).options
    fields = set(options_model.model_fields) if options_model is not None else set()
    if weights is not None:
        if "weights" not in fields:
            raise click.BadParameter(f"extractor {name!r} takes no weights option", param_hint="--extractor-weights")
        options["weights"] = str(weights)
    if names:
        key = next((k for k in ("layers", "tap") if k in fields), None)
        if key is None:
            raise click.BadParameter(f"extractor {name!r} has no layer option", param_hint="--extractor-layers")
        options[key] = names
    return options
