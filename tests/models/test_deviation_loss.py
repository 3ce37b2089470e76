from __future__ import annotations

import math

import pytest
import torch

from ahl_plugins.errors import InvalidComponentError, InvalidOptionsError
from ahl_plugins.plugins import PluginManager
from builtin_plugins.deviation import (
    Deviation,
    DeviationLoss,
    draw_references,
    masked_mean,
)
from builtin_plugins.losses import DeviationLossOptions, build_deviation_loss


def hand_loss(scores, labels, mu, sigma, margin=5.0):
    total = 0.0
    for s, y in zip(scores, labels, strict=True):
        dev = (s - mu) / sigma
        total += abs(dev) if y == 0 else max(0.0, margin - dev)
    return total / len(scores)


def test_reference_statistics_drawn_once_from_seed():
    loss = DeviationLoss(reference_seed=3)
    refs = draw_references(5000, 3)
    assert refs.shape == (5000,)
    assert loss.deviation.mu == pytest.approx(float(refs.mean()))
    assert loss.deviation.sigma == pytest.approx(float(refs.std(unbiased=False)))
    # N(0, 1) references: the statistics are close to 0 and 1.
    assert abs(loss.deviation.mu) < 0.05 and abs(loss.deviation.sigma - 1.0) < 0.05
    assert DeviationLoss(reference_seed=3).deviation.mu == loss.deviation.mu
    assert DeviationLoss(reference_seed=4).deviation.mu != loss.deviation.mu


def test_values_against_hand_computation_with_unit_references():
    loss = DeviationLoss()
    loss.deviation.mu, loss.deviation.sigma = 0.0, 1.0
    scores = torch.tensor([0.0, 1.0, 7.0, 3.0, -2.0])
    labels = torch.tensor([0, 0, 1, 2, 0])
    # normals |0|, |1|, |-2|; seen max(0, 5-7) = 0; pseudo counts as anomaly: max(0, 5-3) = 2
    assert float(loss({"score": scores}, labels)) == pytest.approx((0 + 1 + 0 + 2 + 2) / 5)


def test_values_against_hand_computation_with_drawn_references():
    loss = DeviationLoss(margin=4.0, reference_seed=11)
    scores = [0.3, -1.2, 2.5, 6.0, 1.0]
    labels = [0, 0, 1, 1, 2]
    value = loss({"score": torch.tensor(scores, dtype=torch.float64)}, torch.tensor(labels))
    expected = hand_loss(scores, labels, loss.deviation.mu, loss.deviation.sigma, margin=4.0)
    assert float(value) == pytest.approx(expected, rel=1e-12)


def test_loss_is_pure_and_differentiable():
    loss = DeviationLoss()
    scores = torch.tensor([0.5, 2.0, 9.0], requires_grad=True)
    labels = torch.tensor([0, 1, 1])
    a, b = loss({"score": scores}, labels), loss({"score": scores}, labels)
    assert torch.equal(a, b)
    a.backward()
    grad = scores.grad
    sigma = loss.deviation.sigma
    assert grad[0] == pytest.approx(1 / (3 * sigma))  # normal above the centre is pulled down
    assert grad[1] == pytest.approx(-1 / (3 * sigma))  # anomaly inside the margin is pushed up
    assert grad[2] == 0  # anomaly beyond the margin: no gradient


def test_heads_option_and_missing_head():
    scores = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0, 4.0])}
    labels = torch.tensor([0, 1])
    both = DeviationLoss()(scores, labels)
    only_a = DeviationLoss(heads=["a"])(scores, labels)
    only_b = DeviationLoss(heads=["b"])(scores, labels)
    assert float(both) == pytest.approx(float(only_a + only_b))
    with pytest.raises(InvalidComponentError, match="needs head score"):
        DeviationLoss(heads=["c"])(scores, labels)


def test_masked_mean_empty_mask_is_zero_without_nan_gradient():
    values = torch.tensor([1.0, float("inf"), 3.0], requires_grad=True)
    out = masked_mean(values, torch.tensor([False, False, False]))
    out.backward()
    assert out.detach().item() == 0.0
    assert not torch.isnan(values.grad).any() and torch.all(values.grad == 0)
    assert masked_mean(values, torch.tensor([True, False, True])).item() == pytest.approx(2.0)


def test_deviation_rejects_degenerate_reference_count():
    with pytest.raises(ValueError, match="n_references"):
        Deviation(n_references=1)


def test_registered_as_plugin_with_strict_options():
    manager = PluginManager(builtins=("builtin_plugins.losses",), entry_point_group=None).load()
    entry = manager.get("losses", "deviation")
    options = entry.parse_options({"margin": 3.0})
    assert isinstance(options, DeviationLossOptions)
    loss = entry.factory(options)
    assert loss.deviation.margin == 3.0
    with pytest.raises(InvalidOptionsError, match="margn"):
        entry.parse_options({"margn": 3.0})
    default = build_deviation_loss()
    assert math.isclose(default.deviation.margin, 5.0)
