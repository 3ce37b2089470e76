"""Building a detector's components from its resolved options, in one place.

The extractor, scorer, loss, pseudo-anomaly generators and AHL's estimator all come from the plugin
registries here; the trainers below this layer receive built objects and never look a name up.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch

from ahl_plugins.ahl.options import AHLOptions
from ahl_plugins.contracts import (
    FeatureExtractor,
    FeatureSpec,
    GeneralizabilityEstimator,
    InputKind,
    Loss,
    PseudoAnomalyGenerator,
)
from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.features.pseudo import compatible
from ahl_plugins.plugins import PluginManager
from ahl_plugins.resolve import ResolvedOptions
from ahl_plugins.seeding import seeded

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule


class Components:
    """Builds what one detector configuration needs; ``own_extractor`` is a user's network or extractor
    object used instead of a registered extractor."""

    def __init__(self, manager: PluginManager, resolved: ResolvedOptions, own_extractor: FeatureExtractor | None):
        self.manager = manager
        self.resolved = resolved
        self.own_extractor = own_extractor

    @property
    def config(self):
        return self.resolved.config

    def extractor(self, kind: InputKind, skip_weights: bool = False) -> FeatureExtractor:
        """The configured extractor; ``skip_weights`` when saved fine-tuned weights replace the pretrained ones."""
        if self.own_extractor is not None:
            extractor = self.own_extractor
            if self.config.finetune_backbone:
                extractor = copy.deepcopy(extractor)  # fine-tuning must not change the caller's network
        else:
            spec = self.resolved.spec
            name = self.config.extractor or (spec.image_extractor if kind == "image" else spec.vector_extractor)
            entry = self.manager.get("feature_extractors", name)
            options = entry.parse_options(self.config.extractor_options)
            if skip_weights and options is not None and "weights" in type(options).model_fields:
                options = options.model_copy(update={"weights": "none"})
            extractor = entry.build(options=options)
        if extractor.input_kind != kind:
            raise DataError(
                f"extractor {self.config.extractor or type(extractor).__name__!r} takes {extractor.input_kind} inputs "
                f"but the data are {kind}s; choose an extractor for {kind}s"
            )
        return extractor

    def scorer(self, spec: FeatureSpec) -> ScorerModule:
        """A fresh scorer for features of ``spec``, its initial weights drawn under the detector's seed."""
        entry = self.resolved.scorer
        with seeded(self.config.seed):
            scorer = entry.build(spec, options=self.resolved.scorer_options)
        if not isinstance(scorer, torch.nn.Module) or not callable(getattr(scorer, "combine", None)):
            raise InvalidOptionsError(
                f"scorer {entry.name!r} (from plugin {entry.plugin!r}) returned {type(scorer).__name__}, "
                "not an nn.Module with combine(); see the Scorer contract in ahl_plugins.contracts"
            )
        return cast("ScorerModule", scorer)  # checked just above

    def saved_scorer(self, spec: FeatureSpec, n_tasks: int | None) -> ScorerModule:
        """An untrained scorer of a saved model's shape (the ensemble ablation holds one per task; the
        map-statistics score wraps the model's scorer)."""
        scorer = self.scorer(spec)
        trainer = self.resolved.trainer
        if isinstance(trainer, AHLOptions) and trainer.ablation == "ensemble":
            from ahl_plugins.ahl.ensemble import EnsembleScorer

            scorer = cast("ScorerModule", EnsembleScorer.from_template(scorer, n_tasks or 1))  # meets Scorer
        if self.config.map_statistics != "off":
            from ahl_plugins.map_scoring import MapStatisticsScorer

            form = self.config.map_statistics
            scorer = cast(
                "ScorerModule", MapStatisticsScorer(scorer, spec.n_scales, form, self.resolved.map_statistics)
            )
        return scorer

    def loss(self) -> Loss:
        return self.resolved.loss.build(options=self.resolved.loss_options)

    def pseudo_generators(
        self, extractor: FeatureExtractor, kind: InputKind
    ) -> list[tuple[str, PseudoAnomalyGenerator, int]]:
        """``(name, generator, seed)`` of every pseudo-anomaly generator in use, in name order."""
        registry = self.manager.registry("pseudo_anomaly_generators")
        names = self.config.pseudo_anomalies
        built = {}
        for name in names if names is not None else registry.names():
            generator = registry.get(name).build()
            if names is None and not getattr(generator, "default", True):
                continue  # opt-in generators are used only when named
            if compatible(generator, extractor):
                built[name] = generator
            elif names is not None:
                raise DataError(
                    f"pseudo-anomaly generator {name!r} works on {generator.domain}s, but the inputs are {kind}s"
                )
        seed = self.config.seed
        return [(name, generator, seed * 1009 + i) for i, (name, generator) in enumerate(sorted(built.items()))]

    def estimator_factory(self) -> Callable[[int], GeneralizabilityEstimator]:
        """What AHL calls with its task count once HADG has built the tasks."""
        options = self.resolved.trainer
        if not isinstance(options, AHLOptions):
            raise InvalidOptionsError("generalizability estimators belong to AHL; this detector trains without ahl")
        seed = self.config.seed
        return lambda n_tasks: build_estimator(self.manager, options, n_tasks, seed)


def build_estimator(manager: PluginManager, options: AHLOptions, n_tasks: int, seed: int) -> GeneralizabilityEstimator:
    """The registered estimator, with ``window`` (= K) and ``seed`` filled in when it takes them."""
    entry = manager.get("estimators", options.estimator_name)
    values: dict[str, Any] = dict(options.estimator_options) if options.ablation != "uniform" else {}
    fields = entry.options.model_fields if entry.options is not None else {}
    if "window" in fields:
        if "window" in values and int(values["window"]) != options.history:
            raise InvalidOptionsError(
                f"estimator_options.window={values['window']} disagrees with AHLOptions.history={options.history}; "
                "set the history length K once, as AHLOptions.history"
            )
        values["window"] = options.history
    if "seed" in fields:
        values.setdefault("seed", int(seed))
    estimator = entry.build(n_tasks, options=values)
    if not callable(getattr(estimator, "task_weights", None)):
        raise InvalidOptionsError(
            f"estimator {entry.name!r} (from plugin {entry.plugin!r}) built a {type(estimator).__name__} "
            "without task_weights(history, targets, error_weights)"
        )
    return estimator
