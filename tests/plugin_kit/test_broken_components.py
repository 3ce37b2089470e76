"""The contract kit fails deliberately broken components, naming the broken requirement.

Each broken component differs from a passing one (``plugin_kit_components``)
in one respect, and each test checks the requirement id and the words of the
message that tell the author what to fix.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from plugin_kit_components import (
    SoftmaxEstimator,
    TinyConvExtractor,
    TinyScorer,
    VectorIdentity,
    VectorNoise,
    bare_manager,
    logistic_loss,
    make_plugin,
)
from torch import nn

from ahl_plugins import ModelSpec
from ahl_plugins.plugins import PluginManager
from ahl_plugins.testing import ContractError, check_all, check_component


def failure(manager: PluginManager, kind: str, name: str, **options) -> ContractError:
    with pytest.raises(ContractError) as info:
        check_component(kind, name, manager, **options)
    return info.value


def with_components(**registrations) -> PluginManager:
    manager = bare_manager()
    manager.register_plugin(make_plugin(**registrations), "broken")
    return manager


def scorer_failure(scorer_class, **options) -> ContractError:
    manager = with_components(ahl_register_scorers=[("bad", scorer_class)])
    return failure(manager, "scorer", "bad", **options)


def loss_failure(loss, **options) -> ContractError:
    manager = with_components(ahl_register_losses=[("bad", lambda options=None: loss)])
    return failure(manager, "loss", "bad", **options)


# -- scorers -------------------------------------------------------------------------------
class WrongShapeScorer(TinyScorer):
    def forward(self, features):
        return {"score": self.scale_scores(features).unsqueeze(-1)}


class NoGradientScorer(TinyScorer):
    def forward(self, features):
        with torch.no_grad():
            return {"score": self.scale_scores(features)}


class UnusedParameterScorer(TinyScorer):
    def __init__(self, spec, options=None):
        super().__init__(spec, options)
        self.unused = nn.Parameter(torch.zeros(3))


class CachingScorer(TinyScorer):
    """Keeps its weights in a plain list, which functional_call cannot see."""

    def __init__(self, spec, options=None):
        super().__init__(spec, options)
        self.cached = [(lin.weight, lin.bias) for lin in self.linears]

    def forward(self, features):
        scores = [F.linear(pool_(x), w, b).squeeze(-1) for (w, b), x in zip(self.cached, features, strict=True)]
        return {"score": torch.stack(scores).mean(dim=0)}


def pool_(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x


class PlainTensorScorer(TinyScorer):
    """Keeps the normals' mean as a plain attribute instead of a buffer."""

    def prepare(self, normal_features, generator):
        self.reference = pool_(normal_features[0]).mean()

    def forward(self, features):
        return {"score": self.scale_scores(features) - self.reference}


class BatchDependentScorer(TinyScorer):
    def forward(self, features):
        score = self.scale_scores(features)
        return {"score": score - score.mean()}


class GlobalRandomPrepareScorer(TinyScorer):
    def __init__(self, spec, options=None):
        super().__init__(spec, options)
        self.register_buffer("offset", torch.zeros(()))

    def prepare(self, normal_features, generator):
        self.offset.copy_(torch.randn(()))  # ignores the generator it was given

    def forward(self, features):
        return {"score": self.scale_scores(features) + self.offset}


class WrongHeadsScorer(TinyScorer):
    head_names = ("score", "extra")


class VectorOnlyScorer(TinyScorer):
    supported_kinds = ("vector",)

    def __init__(self, spec, options=None):
        if spec.kind != "vector":
            raise ValueError("vectors only")
        super().__init__(spec, options)


class BadKindsScorer(TinyScorer):
    supported_kinds = ("graph",)


def test_wrong_output_shape_is_reported_with_the_expected_shape() -> None:
    error = scorer_failure(WrongShapeScorer)
    assert error.requirement == "scorer.heads"
    assert error.feature_kind == "map"
    assert "head 'score' has shape (12, 1) for a batch of 12; expected (12,)" in str(error)
    assert "squeeze" in str(error)
    assert "scorer 'bad' (plugin 'broken') on map features breaks [scorer.heads]" in str(error)


def test_scorer_without_gradients_is_reported() -> None:
    error = scorer_failure(NoGradientScorer)
    assert error.requirement == "scorer.gradients"
    assert "does not require grad" in error.detail and "torch.no_grad()" in error.detail
    assert error.passed[:4] == [
        "scorer.build [map]",
        "scorer.prepare [map]",
        "scorer.heads [map]",
        "scorer.combine [map]",
    ]


def test_parameter_that_gets_no_gradient_is_named() -> None:
    error = scorer_failure(UnusedParameterScorer)
    assert error.requirement == "scorer.gradients"
    assert "no gradient reaches parameter(s) ['unused']" in error.detail


def test_scorer_that_caches_parameters_fails_functional_call() -> None:
    error = scorer_failure(CachingScorer)
    assert error.requirement == "scorer.functional-call"
    assert "equals the output with the ORIGINAL parameters" in error.detail
    assert "Tensors kept outside parameters/buffers: ['cached[0][0]', 'cached[0][1]'" in error.detail
    # the same scorer without the cache passes: the failure is the cache, nothing else
    manager = with_components(ahl_register_scorers=[("good", TinyScorer)])
    assert "scorer.functional-call [vector]" in check_component("scorer", "good", manager).passed


def test_tensor_kept_outside_buffers_is_named() -> None:
    error = scorer_failure(PlainTensorScorer)
    assert error.requirement == "scorer.state"
    assert "['reference']" in error.detail and "register_buffer" in error.detail


def test_batch_dependent_scores_are_reported() -> None:
    error = scorer_failure(BatchDependentScorer)
    assert error.requirement == "scorer.batch-independent"
    assert "within the batch but" in error.detail


def test_prepare_using_the_global_rng_is_reported() -> None:
    error = scorer_failure(GlobalRandomPrepareScorer)
    assert error.requirement == "scorer.determinism"
    assert "only from the generator it receives" in error.detail


def test_heads_must_match_head_names() -> None:
    error = scorer_failure(WrongHeadsScorer)
    assert error.requirement == "scorer.heads"
    assert "forward returned heads ['score'] but head_names is ['score', 'extra']" in error.detail


def test_supported_kinds_is_respected_and_validated() -> None:
    manager = with_components(ahl_register_scorers=[("vec", VectorOnlyScorer), ("bad", BadKindsScorer)])
    report = check_component("scorer", "vec", manager)
    assert report.skipped == ["map features: not in supported_kinds ('vector',)"]
    assert "scorer.functional-call [vector]" in report.passed
    assert not any("[map]" in p for p in report.passed)
    error = failure(manager, "scorer", "bad")
    assert error.requirement == "scorer.supported-kinds"
    assert "'graph'" in error.detail


def test_factory_returning_a_non_module_is_reported() -> None:
    error = scorer_failure(lambda spec, options=None: lambda features: {"score": features[0].sum(1)})
    assert error.requirement == "scorer.build"
    assert "not a torch.nn.Module" in error.detail


# -- losses ----------------------------------------------------------------------------------
def swapped_named(labels, heads):
    return logistic_loss(heads, labels)


def swapped_positional(first, second):
    """Runs only as loss(labels, heads): dict(second) fails on a tensor."""
    return logistic_loss(dict(second), first)


def inverted(heads, labels):
    return logistic_loss({"score": -heads["score"]}, labels)


def ignores_pseudo(heads, labels):
    score = heads["score"]
    seen = (labels == 1).to(score.dtype)
    normal = (labels == 0).to(score.dtype)
    return (seen * F.softplus(-score) + normal * F.softplus(score)).mean()


def nan_without_pseudo(heads, labels):
    score = heads["score"]
    return (
        F.softplus(score[labels == 0]).mean()
        + F.softplus(-score[labels == 1]).mean()
        + F.softplus(-score[labels == 2]).mean()
    )


def noisy(heads, labels):
    return logistic_loss(heads, labels) + 0.01 * torch.randn(())


def per_sample(heads, labels):
    anomalous = (labels != 0).float()
    return anomalous * F.softplus(-heads["score"]) + (1 - anomalous) * F.softplus(heads["score"])


def in_place(heads, labels):
    score = heads["score"]
    with torch.no_grad():
        score.mul_(0.5)
    return logistic_loss(heads, labels)


def test_loss_with_swapped_arguments_fails_on_its_signature() -> None:
    error = loss_failure(swapped_named)
    assert error.requirement == "loss.signature"
    assert "declared as loss(labels, heads)" in error.detail and "swap the arguments" in error.detail


def test_loss_that_only_runs_with_swapped_arguments_is_reported() -> None:
    error = loss_failure(swapped_positional)
    assert error.requirement == "loss.signature"
    assert "but loss(labels, heads) runs: the loss takes its arguments in the wrong order" in error.detail


def test_loss_with_inverted_labels_fails_the_label_convention() -> None:
    error = loss_failure(inverted)
    assert error.requirement == "loss.labels"
    assert "seen anomaly (1)" in error.detail and "it should lower it" in error.detail


def test_loss_that_treats_pseudo_anomalies_as_normal_is_reported() -> None:
    error = loss_failure(ignores_pseudo)
    assert error.requirement == "loss.labels"
    assert "pseudo anomaly (2)" in error.detail


def test_loss_that_is_nan_when_a_group_is_absent_is_reported() -> None:
    error = loss_failure(nan_without_pseudo)
    assert error.requirement == "loss.absent-group"
    assert "labels [0]" in error.detail and "guard empty groups" in error.detail


def test_loss_with_hidden_randomness_is_reported() -> None:
    error = loss_failure(noisy)
    assert error.requirement == "loss.pure"
    assert "another global RNG state" in error.detail


def test_loss_that_modifies_its_inputs_is_reported() -> None:
    error = loss_failure(in_place)
    assert error.requirement == "loss.pure"
    assert "modified its inputs in place" in error.detail


def test_per_sample_loss_is_reported_with_a_hint() -> None:
    error = loss_failure(per_sample)
    assert error.requirement == "loss.scalar"
    assert "shape (12,)" in error.detail and ".mean()" in error.detail


# -- models ------------------------------------------------------------------------------------
def test_model_naming_an_unknown_scorer_is_reported() -> None:
    manager = with_components(
        ahl_register_losses=[("logistic", lambda options=None: logistic_loss)],
        ahl_register_models=[("m", ModelSpec(scorer="tinny", loss="logistic"))],
    )
    error = failure(manager, "model", "m")
    assert error.requirement == "model.references"
    assert "ModelSpec.scorer = 'tinny'" in error.detail


def test_model_with_invalid_options_is_reported() -> None:
    from pydantic import BaseModel, ConfigDict

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        width: int = 4

    manager = with_components(
        ahl_register_scorers=[("tiny", TinyScorer, {"options": Options})],
        ahl_register_losses=[("logistic", lambda options=None: logistic_loss)],
        ahl_register_feature_extractors=[("vec", VectorIdentity), ("conv", TinyConvExtractor)],
        ahl_register_models=[
            (
                "m",
                ModelSpec(
                    scorer="tiny",
                    loss="logistic",
                    image_extractor="conv",
                    vector_extractor="vec",
                    scorer_options={"widht": 8},
                ),
            )
        ],
    )
    error = failure(manager, "model", "m")
    assert error.requirement == "model.options"
    assert "widht" in error.detail


def test_model_whose_scorer_caches_parameters_fails() -> None:
    manager = with_components(
        ahl_register_scorers=[("caching", CachingScorer)],
        ahl_register_losses=[("logistic", lambda options=None: logistic_loss)],
        ahl_register_feature_extractors=[("vec", VectorIdentity), ("conv", TinyConvExtractor)],
        ahl_register_models=[
            ("m", ModelSpec(scorer="caching", loss="logistic", image_extractor="conv", vector_extractor="vec"))
        ],
    )
    error = failure(manager, "model", "m")
    assert error.requirement == "scorer.functional-call"
    assert error.kind == "models" and error.name == "m"


# -- extractors, generators, estimators ----------------------------------------------------------
class WrongChannelsExtractor(VectorIdentity):
    def extract(self, batch):
        return [torch.cat([batch, batch], dim=1)]


class TrainModeExtractor(TinyConvExtractor):
    def __init__(self, options=None):
        super().__init__(options)
        self.net.train()


class IdFingerprintExtractor(VectorIdentity):
    def fingerprint(self):
        return f"vector-identity-{id(self)}"


class OutOfRangeImages(VectorNoise):
    domain = "image"

    def generate(self, x, pool, generator):
        return x + 2.0, torch.ones(x.shape[0], 1, *x.shape[2:], dtype=torch.bool)


class UnmaskedChange(VectorNoise):
    def generate(self, x, pool, generator):
        out, mask = super().generate(x, pool, generator)
        return out + 0.5, mask


class GlobalRandomGenerator(VectorNoise):
    def generate(self, x, pool, generator):
        mask = torch.ones_like(x, dtype=torch.bool)
        return x + torch.randn(x.shape), mask


class SixTasksEstimator(SoftmaxEstimator):
    def task_weights(self, history, targets, error_weights):
        return torch.full((6,), 1 / 6)


class UnnormalisedEstimator(SoftmaxEstimator):
    def task_weights(self, history, targets, error_weights):
        return torch.exp(-super().task_weights(history, targets, error_weights))


@pytest.mark.parametrize(
    ("hook", "kind", "component", "requirement", "words"),
    [
        ("ahl_register_feature_extractors", "extractor", WrongChannelsExtractor, "extractor.output", "expected 3×10"),
        ("ahl_register_feature_extractors", "extractor", TrainModeExtractor, "extractor.frozen", "eval mode"),
        (
            "ahl_register_feature_extractors",
            "extractor",
            IdFingerprintExtractor,
            "extractor.fingerprint",
            "cache would never hit",
        ),
        (
            "ahl_register_pseudo_anomaly_generators",
            "generator",
            OutOfRangeImages,
            "generator.output",
            "must stay in [0, 1]",
        ),
        (
            "ahl_register_pseudo_anomaly_generators",
            "generator",
            UnmaskedChange,
            "generator.mask",
            "where mask is false",
        ),
        (
            "ahl_register_pseudo_anomaly_generators",
            "generator",
            GlobalRandomGenerator,
            "generator.determinism",
            "generator argument",
        ),
        ("ahl_register_estimators", "estimator", SixTasksEstimator, "estimator.weights", "T = 3 tasks"),
        ("ahl_register_estimators", "estimator", UnnormalisedEstimator, "estimator.weights", "not 1"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_broken_extractors_generators_estimators(hook, kind, component, requirement, words) -> None:
    manager = with_components(**{hook: [("bad", component)]})
    error = failure(manager, kind, "bad")
    assert error.requirement == requirement
    assert words in error.detail


def test_check_all_lists_every_failing_component() -> None:
    manager = with_components(
        ahl_register_scorers=[("tiny", TinyScorer)],
        ahl_register_losses=[("logistic", lambda options=None: logistic_loss)],
        ahl_register_pseudo_anomaly_generators=[("noise", VectorNoise)],
    )
    reports = check_all("broken", manager)  # the plugin is called "broken", but all its parts are fine
    assert [(r.kind, r.name) for r in reports] == [
        ("pseudo_anomaly_generators", "noise"),
        ("losses", "logistic"),
        ("scorers", "tiny"),
    ]
    assert all(r.ok for r in reports)
    manager.register_plugin(
        make_plugin(ahl_register_scorers=[("shape", WrongShapeScorer), ("cache", CachingScorer)]), "two_bad"
    )
    with pytest.raises(ContractError) as info:
        check_all("two_bad", manager)
    assert [f.requirement for f in info.value.failures] == ["scorer.functional-call", "scorer.heads"]
    assert str(info.value).startswith("2 component(s) broke their contract:")


def test_unknown_plugin_is_a_clear_error(manager: PluginManager) -> None:
    from ahl_plugins.errors import UnknownComponentError
    from ahl_plugins.testing import components_of

    with pytest.raises(UnknownComponentError, match="no plugin named 'godo' is loaded .*pip install -e"):
        components_of("godo", manager)


class RaisingHeadNames(TinyScorer):
    @property
    def head_names(self):
        raise RuntimeError("no heads today")


def test_run_checks_reports_unexpected_errors_instead_of_crashing() -> None:
    from ahl_plugins.testing import run_checks

    manager = with_components(ahl_register_scorers=[("odd", RaisingHeadNames), ("fine", TinyScorer)])
    odd, fine = run_checks([("scorers", "odd"), ("scorers", "fine")], manager)
    assert not odd.ok and odd.error.requirement == "unexpected-error"
    assert "RuntimeError: no heads today" in odd.error.detail
    assert fine.ok


def item_loss(heads, labels):
    """Correct, but `.item()` stops torch.func.vmap: AHL must fall back to a loop."""
    weight = 1.0 if labels.float().mean().item() > 0 else 2.0
    return weight * logistic_loss(heads, labels)


def test_model_that_cannot_be_vmapped_passes_with_a_note() -> None:
    manager = with_components(
        ahl_register_scorers=[("tiny", TinyScorer)],
        ahl_register_losses=[("item", lambda options=None: item_loss), ("plain", lambda options=None: logistic_loss)],
        ahl_register_feature_extractors=[("vec", VectorIdentity), ("conv", TinyConvExtractor)],
        ahl_register_models=[
            ("slow", ModelSpec(scorer="tiny", loss="item", image_extractor="conv", vector_extractor="vec")),
            ("fast", ModelSpec(scorer="tiny", loss="plain", image_extractor="conv", vector_extractor="vec")),
        ],
    )
    slow = check_component("model", "slow", manager, kinds=["vector"])
    assert slow.ok
    assert len(slow.notes) == 1 and "cannot batch this model's tasks with torch.func.vmap" in slow.notes[0]
    assert ".item()" in slow.notes[0]
    assert check_component("model", "fast", manager, kinds=["vector"]).notes == []


# -- anomaly maps (optional part of the scorer contract) ----------------------------------------
class MapScorer(TinyScorer):
    """TinyScorer with maps: its linear score at every position (their mean is the pooled score)."""

    def head_maps(self, features):
        return [
            {"score": torch.einsum("bchw,c->bhw", x, lin.weight[0]) + lin.bias[0]}
            for lin, x in zip(self.linears, features, strict=True)
        ]


class PooledMapScorer(MapScorer):
    def head_maps(self, features):
        return [{"score": m["score"].mean(dim=(1, 2), keepdim=True)} for m in super().head_maps(features)]


class MissingHeadMapScorer(MapScorer):
    def head_maps(self, features):
        return [{} for _ in features]


class BatchDependentMapScorer(MapScorer):
    def head_maps(self, features):
        return [{"score": m["score"] - m["score"].mean(dim=0)} for m in super().head_maps(features)]


def test_a_scorer_with_maps_passes_the_map_checks() -> None:
    manager = with_components(ahl_register_scorers=[("maps", MapScorer)])
    report = check_component("scorer", "maps", manager)
    assert "scorer.maps [map]" in report.passed and "scorer.maps-batch-independent [map]" in report.passed
    plain = check_component("scorer", "plain", with_components(ahl_register_scorers=[("plain", TinyScorer)]))
    assert not any(p.startswith("scorer.maps") for p in plain.passed)  # optional: absent is fine


@pytest.mark.parametrize(
    ("scorer_class", "requirement", "words"),
    [
        (PooledMapScorer, "scorer.maps", "one score per position"),
        (MissingHeadMapScorer, "scorer.maps", "expected heads ['score']"),
        (BatchDependentMapScorer, "scorer.maps-batch-independent", "differs alone and within the batch"),
    ],
)
def test_broken_maps_are_named(scorer_class, requirement, words) -> None:
    error = scorer_failure(scorer_class)
    assert error.requirement == requirement and error.feature_kind == "map"
    assert words in error.detail
