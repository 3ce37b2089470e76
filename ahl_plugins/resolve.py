"""A detector's options, resolved once: routed by name, merged (model bundle -> preset -> user), validated.

Every later step (building components, training, fine-tuning, saving) reads the one frozen
:class:`ResolvedOptions` instead of merging the layers again. One rule holds whatever flags are given: a
keyword option means the same thing with or without ``ahl`` or ``finetune_backbone``. Trainer options go to
the trainer that runs (the base loop, or AHL); the fine-tuning stage takes its options only from
``finetune_options`` (``--finetune-option`` on the command line), plus the names only it has.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ahl_plugins.ahl.options import AHLOptions
from ahl_plugins.config import DETECTOR_KEYS, SECTIONS, DetectorConfig
from ahl_plugins.contracts import ComponentEntry, ModelSpec
from ahl_plugins.errors import InvalidOptionsError
from ahl_plugins.map_scoring import MapStatisticsOptions
from ahl_plugins.plugins import PluginManager
from ahl_plugins.presets import preset_options
from ahl_plugins.training.finetune import FINETUNE_ONLY_OPTIONS, FinetuneOptions
from ahl_plugins.training.options import TrainOptions


def trainer_options_model(ahl: bool) -> type[TrainOptions] | type[AHLOptions]:
    """The options model of the trainer that runs: AHL's learner, or the base loop."""
    return AHLOptions if ahl else TrainOptions


def _fields(model: type[BaseModel] | None) -> frozenset[str]:
    return frozenset(model.model_fields) if model is not None else frozenset()


def route_options(manager: PluginManager, model: str, ahl: bool, options: Mapping[str, Any]) -> dict[str, Any]:
    """``DetectorConfig`` fields from keyword options: detector keys as they are, section dicts merged, and
    every other name sent to the section that owns it (trainer, fine-tuning-only, scorer, loss).

    An unknown name is an error listing every valid one; a name of the trainer not in use says so.
    """
    options = dict(options)
    config: dict[str, Any] = {key: dict(options.pop(key, None) or {}) for key in SECTIONS}
    spec = manager.model(model)
    routes = [
        ("ahl_options" if ahl else "train_options", _fields(trainer_options_model(ahl))),
        ("finetune_options", FINETUNE_ONLY_OPTIONS),
        ("scorer_options", _fields(manager.get("scorers", spec.scorer).options)),
        ("loss_options", _fields(manager.get("losses", spec.loss).options)),
    ]
    for key, value in options.items():
        if key in DETECTOR_KEYS:
            config[key] = value
            continue
        section = next((name for name, names in routes if key in names), None)
        if section is None:
            _other_trainer_hint(key, ahl)
            valid = "; ".join(f"{name}: {', '.join(sorted(names)) or '-'}" for name, names in routes)
            raise InvalidOptionsError(
                f"unknown option {key!r} for model {model!r}. Detector options: "
                f"{', '.join(sorted(DETECTOR_KEYS))}; {valid}; extractor options go in extractor_options={{...}}"
            )
        config[section][key] = value
    return config


def _other_trainer_hint(key: str, ahl: bool) -> None:
    """An option of the trainer not in use is a mistake about ``ahl``, not a typo: say so."""
    if key not in _fields(trainer_options_model(not ahl)):
        return
    if ahl:
        raise InvalidOptionsError(
            f"option {key!r} belongs to the base training loop, which ahl=True does not run; the AHL learner's "
            f"options are: {', '.join(sorted(_fields(AHLOptions)))} (`ahl fit --ahl --show-options` lists them)"
        )
    raise InvalidOptionsError(f"option {key!r} is an AHL option; it needs ahl=True (on the command line: --ahl)")


@dataclass(frozen=True)
class ResolvedOptions:
    """Everything a detector runs with, merged and validated once (see the module docstring)."""

    config: DetectorConfig
    spec: ModelSpec
    scorer: ComponentEntry
    loss: ComponentEntry
    scorer_options: BaseModel | None
    loss_options: BaseModel | None
    trainer: TrainOptions | AHLOptions
    finetune: FinetuneOptions | None
    map_statistics: MapStatisticsOptions | None = None  # None with map_statistics="off"

    def effective(self, which: str) -> dict[str, Any]:
        """Every option of the scorer or loss with defaults filled in (what a fine-tuning cache is keyed on)."""
        parsed = self.scorer_options if which == "scorer" else self.loss_options
        return parsed.model_dump(mode="json") if parsed is not None else {}


def resolve(manager: PluginManager, config: DetectorConfig) -> ResolvedOptions:
    """Merge and validate every option of ``config``; bad options raise :class:`InvalidOptionsError` here,
    before anything is built or trained."""
    spec = manager.model(config.model)
    scorer, loss = manager.get("scorers", spec.scorer), manager.get("losses", spec.loss)
    scorer_options = scorer.parse_options(_component_options(config, spec, "scorer", spec.scorer))
    loss_options = loss.parse_options(_component_options(config, spec, "loss", spec.loss))
    for name in config.pseudo_anomalies or ():
        manager.get("pseudo_anomaly_generators", name)
    if config.extractor is not None:
        manager.get("feature_extractors", config.extractor)
    return ResolvedOptions(
        config=config,
        spec=spec,
        scorer=scorer,
        loss=loss,
        scorer_options=scorer_options,
        loss_options=loss_options,
        trainer=_trainer_options(config, spec),
        finetune=_finetune_options(config, spec),
        map_statistics=_map_statistics_options(config),
    )


def _map_statistics_options(config: DetectorConfig) -> MapStatisticsOptions | None:
    """MapStatisticsOptions when ``map_statistics`` is on; options given with it off are a mistake, not a no-op."""
    if config.map_statistics == "off":
        if config.map_statistics_options:
            raise InvalidOptionsError(
                f"map_statistics_options {sorted(config.map_statistics_options)} need map_statistics='learned' or "
                "'floor_learned' (on the command line: -o map_statistics=floor_learned)"
            )
        return None
    try:
        return MapStatisticsOptions(**config.map_statistics_options)
    except ValidationError as exc:
        raise InvalidOptionsError(f"invalid map_statistics_options for model {config.model!r}:\n{exc}") from None


def _component_options(config: DetectorConfig, spec: ModelSpec, kind: str, name: str) -> dict[str, Any]:
    """Options of the scorer or loss: the model bundle's, then the preset's, then the user's."""
    bundle = spec.scorer_options if kind == "scorer" else spec.loss_options
    own = config.scorer_options if kind == "scorer" else config.loss_options
    return {**bundle, **preset_options(config.preset, f"{kind}_options", name), **own}


def _trainer_options(config: DetectorConfig, spec: ModelSpec) -> TrainOptions | AHLOptions:
    model = trainer_options_model(config.ahl)
    section = "ahl_options" if config.ahl else "train_options"
    own = config.ahl_options if config.ahl else config.train_options
    shared = {k: v for k, v in spec.train_options.items() if k in model.model_fields}
    preset = preset_options(config.preset, section)
    if {**shared, **own}.get("estimator", "sge") != "sge":
        preset.pop("estimator_options", None)  # the preset's estimator options are SGE's
    if config.ahl and len(shared) < len(spec.train_options):
        warnings.warn(
            f"model {config.model!r} sets train_options {sorted(set(spec.train_options) - set(shared))} "
            "for the base loop only; the AHL learner does not take them (its learning rates are outer_lr and "
            "inner_lr; set AHL options with ahl_options / -o)",
            stacklevel=4,
        )
    try:
        return model(**{**shared, **preset, **own})
    except ValidationError as exc:
        raise InvalidOptionsError(f"invalid {model.__name__} for model {config.model!r}:\n{exc}") from None


def _finetune_options(config: DetectorConfig, spec: ModelSpec) -> FinetuneOptions | None:
    """FinetuneOptions: the model's training defaults, the preset's, then ``finetune_options``; None without
    fine-tuning. Without AHL the fine-tuned heads are the model, so base-loop options would be ignored: refused."""
    if not config.finetune_backbone:
        if config.finetune_options:
            raise InvalidOptionsError(
                f"fine-tuning options {sorted(config.finetune_options)} need finetune_backbone=True"
            )
        return None
    if not config.ahl and config.train_options:
        names = sorted(config.train_options)
        raise InvalidOptionsError(
            f"options {names} are base-loop options, but with finetune_backbone=True and ahl=False the base loop "
            "does not run: fine-tuning trains the model. Give fine-tuning its options as "
            f"finetune_options={{{', '.join(f'{n!r}: ...' for n in names)}}} "
            f"(on the command line: --finetune-option {names[0]}=...)"
        )
    shared = {k: v for k, v in spec.train_options.items() if k in FinetuneOptions.model_fields}
    preset = {
        k: v for k, v in preset_options(config.preset, "train_options").items() if k in FinetuneOptions.model_fields
    }
    try:
        return FinetuneOptions(**{**shared, **preset, **config.finetune_options})
    except ValidationError as exc:
        raise InvalidOptionsError(f"invalid FinetuneOptions for model {config.model!r}:\n{exc}") from None
