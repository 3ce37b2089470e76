"""Presets: ``paper`` restores the paper's configuration, ``default`` is the validated one; explicit options win."""

from __future__ import annotations

import pytest

from ahl_plugins.ahl.options import PAPER_AHL_OPTIONS, AHLOptions
from ahl_plugins.detector import OSADDetector
from ahl_plugins.errors import InvalidOptionsError


def test_paper_preset_restores_the_papers_ahl_settings():
    detector = OSADDetector("dra", ahl=True, preset="paper")
    options = detector.resolved.trainer
    for key, value in PAPER_AHL_OPTIONS.items():
        assert getattr(options, key) == value, key
    assert (options.inner_update, options.inner_steps, options.inner_lr, options.first_order) == ("sgd", 3, 2e-4, False)


def test_default_preset_is_the_options_defaults_with_the_models_own():
    assert OSADDetector("devnet", ahl=True).resolved.trainer == AHLOptions()
    # DRA's bundle asks for the per-tensor inner step (chosen on validation); the paper preset and the user win
    assert OSADDetector("dra", ahl=True).resolved.trainer == AHLOptions(inner_update="layerwise")
    assert OSADDetector("dra", ahl=True, inner_update="relative").resolved.trainer == AHLOptions()


def test_paper_preset_reaches_the_scorer_and_explicit_options_win():
    detector = OSADDetector("dra", preset="paper", head_calibration=True)
    options = detector.resolved.scorer_options.model_dump()
    assert options["residual_reference"] == "random_mean" and options["vector_head_output"] == "linear"
    assert options["head_calibration"] is True
    assert OSADDetector("devnet", preset="paper").resolved.scorer_options.hidden == [20]
    devnet = OSADDetector("devnet").resolved
    assert devnet.scorer_options == devnet.scorer.options()  # no preset: the scorer's own defaults
    ahl = OSADDetector("devnet", ahl=True, preset="paper", inner_steps=1).resolved.trainer
    assert ahl.inner_steps == 1 and ahl.inner_update == "sgd"


def test_unknown_preset_is_a_clear_error():
    with pytest.raises((InvalidOptionsError, ValueError), match="preset"):
        OSADDetector("devnet", preset="papers")


def test_paper_preset_leaves_a_third_party_estimator_its_own_options():
    options = OSADDetector("devnet", ahl=True, preset="paper", estimator="uniform").resolved.trainer
    assert options.estimator == "uniform" and options.estimator_options == {}
    assert options.inner_update == "sgd"
