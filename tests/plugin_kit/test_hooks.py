"""One test per hook: a component registered through it is found and passes the contract kit.

``test_docs.py`` requires a ``test_hook_<hook name>`` for every hook in
``ahl_plugins.hookspecs`` (as datasette does), so a new hook cannot land untested.
"""

from __future__ import annotations

from plugin_kit_components import (
    ImagePatch,
    SoftmaxEstimator,
    TinyConvExtractor,
    TinyScorer,
    TwoHeadScorer,
    VectorIdentity,
    VectorNoise,
    bare_manager,
    logistic_loss,
    make_plugin,
    two_head_loss,
)

from ahl_plugins import ModelSpec
from ahl_plugins.testing import (
    check_component,
    check_extractor,
    check_generator,
    check_loss,
    check_model,
    check_scorer,
)


def test_hook_ahl_register_feature_extractors() -> None:
    manager = bare_manager()
    plugin = make_plugin(ahl_register_feature_extractors=[("vec", VectorIdentity), ("conv", TinyConvExtractor)])
    with manager.temporary_plugin(plugin, "extractors"):
        assert manager.registry("feature_extractors").names() == ["conv", "vec"]
        vector = check_extractor("vec", manager)
        image = check_extractor("conv", manager)
    expected = ["extractor.build", "extractor.spec", "extractor.output", "extractor.fingerprint", "extractor.frozen"]
    assert vector.passed == expected and image.passed == expected
    assert vector.plugin == "extractors"


def test_hook_ahl_register_scorers() -> None:
    manager = bare_manager()
    plugin = make_plugin(ahl_register_scorers=[("tiny", TinyScorer), ("two", TwoHeadScorer)])
    with manager.temporary_plugin(plugin, "scorers"):
        report = check_scorer("tiny", manager)
        two = check_component("scorer", "two", manager, kinds=["vector"])
    for kind in ("map", "vector"):
        for requirement in ("scorer.heads", "scorer.gradients", "scorer.functional-call", "scorer.determinism"):
            assert f"{requirement} [{kind}]" in report.passed
    assert not any("[map]" in p for p in two.passed)
    assert "scorer.functional-call [vector]" in two.passed


def test_hook_ahl_register_losses() -> None:
    manager = bare_manager()
    plugin = make_plugin(
        ahl_register_losses=[
            ("logistic", lambda options=None: logistic_loss),
            ("two", lambda options=None: two_head_loss),
        ],
        ahl_register_scorers=[("two", TwoHeadScorer)],
    )
    with manager.temporary_plugin(plugin, "losses"):
        report = check_loss("logistic", manager)
        # the normal head must go DOWN when the anomaly score goes up: the kit learns that from combine()
        two = check_loss("two", manager, scorer="two")
    expected = ["loss.build", "loss.signature", "loss.scalar", "loss.pure", "loss.labels", "loss.absent-group"]
    assert report.passed == expected and two.passed == expected


def test_hook_ahl_register_models() -> None:
    manager = bare_manager()
    plugin = make_plugin(
        ahl_register_scorers=[("tiny", TinyScorer)],
        ahl_register_losses=[("logistic", lambda options=None: logistic_loss)],
        ahl_register_feature_extractors=[("vec", VectorIdentity), ("conv", TinyConvExtractor)],
        ahl_register_models=[
            ("tiny", ModelSpec(scorer="tiny", loss="logistic", image_extractor="conv", vector_extractor="vec"))
        ],
    )
    with manager.temporary_plugin(plugin, "models"):
        assert manager.model("tiny").scorer == "tiny"
        report = check_model("tiny", manager)
    for requirement in (
        "model.references",
        "model.options",
        "model.meta-gradient [map]",
        "model.learns [vector]",
        "loss.labels",
    ):
        assert requirement in report.passed


def test_hook_ahl_register_pseudo_anomaly_generators() -> None:
    manager = bare_manager()
    plugin = make_plugin(ahl_register_pseudo_anomaly_generators=[("noise", VectorNoise), ("patch", ImagePatch)])
    with manager.temporary_plugin(plugin, "generators"):
        vector = check_generator("noise", manager)
        image = check_generator("patch", manager, image_size=32)
    expected = ["generator.build", "generator.output", "generator.mask", "generator.determinism"]
    assert vector.passed == expected and image.passed == expected


def test_hook_ahl_register_estimators() -> None:
    manager = bare_manager()
    plugin = make_plugin(ahl_register_estimators=[("softmax", SoftmaxEstimator)])
    with manager.temporary_plugin(plugin, "estimators"):
        report = check_component("estimator", "softmax", manager)
    assert report.passed == ["estimator.build", "estimator.weights", "estimator.determinism"]
