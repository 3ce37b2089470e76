"""The per-position part of the contract: a loss that declares ``uses_position_labels`` is checked with
per-position labels, a scorer's ``position_heads`` with ``forward(positions=True)``; a plugin written to the
contract without masks passes exactly as before."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from plugin_kit_components import TinyScorer, bare_manager, good_plugin, logistic_loss

from ahl_plugins import ModelSpec
from ahl_plugins.testing import ContractError, check_loss, check_model, check_scorer


class MapScorer(TinyScorer):
    """TinyScorer plus a per-position score map of the first scale (a 1×1 linear over channels)."""

    def __init__(self, spec: Any, options: Any = None) -> None:
        super().__init__(spec, options)
        self.position_heads: tuple[str, ...] = ("score_map",) if spec.kind == "map" else ()

    def forward(self, features: Sequence[torch.Tensor], positions: bool = False) -> dict[str, torch.Tensor]:
        heads = {"score": self.scale_scores(features)}
        if positions and self.position_heads:
            heads["score_map"] = self.linears[0](features[0].permute(0, 2, 3, 1)).squeeze(-1)
        return heads


class PositionLogistic:
    """The logistic loss plus BCE at known positions; ``positions`` is a required keyword."""

    uses_position_labels = True

    def __init__(self, mask_nan: bool = True) -> None:
        self.mask_nan = mask_nan

    def __call__(self, heads: Mapping[str, torch.Tensor], labels: torch.Tensor, *, positions) -> torch.Tensor:
        value = logistic_loss(heads, labels)
        for name, target in positions.items():
            known = ~torch.isnan(target) if self.mask_nan else torch.ones_like(target, dtype=torch.bool)
            clean = target.nan_to_num(0.0) if self.mask_nan else target  # unmasked, NaN leaks into the loss
            bce = F.binary_cross_entropy_with_logits(heads[name], clean, reduction="none")
            value = value + torch.where(known, bce, 0.0).sum() / known.sum().clamp(min=1)
        return value


class ForgetfulScorer(MapScorer):
    """Declares a position head it never returns."""

    def forward(self, features: Sequence[torch.Tensor], positions: bool = False) -> dict[str, torch.Tensor]:
        return {"score": self.scale_scores(features)}


def manager_with(scorer: type, loss: Any):
    manager = bare_manager()
    extra = {
        "ahl_register_scorers": [("map_scorer", scorer)],
        "ahl_register_losses": [("position_logistic", lambda options=None: loss)],
        "ahl_register_models": [
            (
                "position_model",
                ModelSpec(
                    scorer="map_scorer",
                    loss="position_logistic",
                    image_extractor="tiny_conv",
                    vector_extractor="vector_identity",
                ),
            )
        ],
    }
    manager.register_plugin(good_plugin(**extra), "good")
    return manager


def test_a_plugin_without_masks_passes_unchanged_and_is_not_asked_for_positions():
    report = check_model("tiny", manager_with(MapScorer, PositionLogistic()), kinds=["map"])
    assert "loss.positions" not in report.passed
    assert not any(p.startswith("scorer.position-heads") for p in report.passed)


def test_a_declaring_loss_and_a_scorer_with_position_heads_are_checked_with_them():
    report = check_model("position_model", manager_with(MapScorer, PositionLogistic()), kinds=["map"])
    assert "loss.positions" in report.passed
    assert "scorer.position-heads [map]" in report.passed
    assert "loss.positions" in check_loss("position_logistic", manager_with(MapScorer, PositionLogistic())).passed


def test_a_declaring_loss_that_lets_unknown_positions_leak_in_fails():
    with pytest.raises(ContractError) as caught:
        check_loss("position_logistic", manager_with(MapScorer, PositionLogistic(mask_nan=False)))
    assert caught.value.requirement == "loss.positions"


def test_a_scorer_that_does_not_return_its_position_heads_fails():
    with pytest.raises(ContractError) as caught:
        check_model("position_model", manager_with(ForgetfulScorer, PositionLogistic()), kinds=["map"])
    assert caught.value.requirement == "scorer.position-heads"
    assert "score_map" in caught.value.detail


def test_the_template_declares_position_labels_only_when_its_option_asks(tmp_path, monkeypatch):
    import importlib

    from ahl_plugins.templates import write_plugin_package

    write_plugin_package("mask_probe", tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "ahl-plugin-mask-probe" / "src"))
    plugin = importlib.import_module("ahl_plugin_mask_probe.plugin")
    manager = bare_manager()
    manager.register_plugin(good_plugin(), "good")
    manager.register_plugin(plugin, "mask_probe")
    assert not manager.get("losses", "mask_probe").build().uses_position_labels
    report = check_loss("mask_probe", manager, options={"position_weight": 1.0})
    assert "loss.positions" in report.passed
    assert "scorer.position-heads [map]" in check_scorer("mask_probe", manager, kinds=["map"]).passed
