"""SGE: weights sum to 1, are uniform before K epochs, and move away from a task that errs."""

from __future__ import annotations

import pytest
import torch

from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.plugins import get_manager
from builtin_plugins.estimators import SGEOptions
from builtin_plugins.estimators.sge import SGEEstimator, UniformEstimator


def _history(epochs: int, n: int = 120, n_tasks: int = 4, bad: int | None = None, seed: int = 0):
    """Scores of T models: good ones give normals ~0.1 and anomalies ~0.9; ``bad`` inverts them."""
    g = torch.Generator().manual_seed(seed)
    targets = (torch.arange(n) % 3 == 0).long()
    clean = torch.where(targets.bool(), 0.9, 0.1)[None, :, None].expand(epochs, n, n_tasks).clone()
    if bad is not None:
        clean[:, :, bad] = 1.0 - clean[:, :, bad]
    history = (clean + 0.03 * torch.randn(epochs, n, n_tasks, generator=g)).clamp(0, 1)
    error_weights = torch.where(targets.bool(), 1.0, 0.5)[:, None].expand(n, n_tasks).clone()
    error_weights[: n // 4, 0] = 0.0  # model 0 trained on these normals
    return history, targets, error_weights


def _sge(n_tasks=4, **options):
    return SGEEstimator(n_tasks, SGEOptions(window=3, train_steps=60, lr=2e-2, **options))


def test_uniform_before_k_epochs_of_history():
    estimator = _sge()
    for epochs in range(3):
        history, targets, ew = _history(epochs)
        weights = estimator.task_weights(history, targets, ew)
        torch.testing.assert_close(weights, torch.full((4,), 0.25))
    assert "uniform" in estimator.diagnostics["status"]


def test_weights_sum_to_one_once_history_exists():
    estimator = _sge()
    history, targets, ew = _history(6)
    weights = estimator.task_weights(history, targets, ew)
    assert weights.shape == (4,) and (weights >= 0).all()
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
    assert estimator.diagnostics["status"] == "sge" and len(estimator.diagnostics["errors"]) == 4


def test_weight_moves_away_from_a_task_with_large_error():
    estimator = _sge()
    history, targets, ew = _history(6, bad=2)
    for e in range(3, 7):  # called every epoch, as the learner does
        weights = estimator.task_weights(history[:e], targets, ew)
    errors = estimator.diagnostics["errors"]
    assert errors[2] > 3 * max(errors[i] for i in (0, 1, 3))
    assert weights[2] < 0.8 * min(weights[i] for i in (0, 1, 3))


def test_lower_temperature_sharpens_the_weights():
    history, targets, ew = _history(6, bad=1)
    soft = _sge(temperature=1.0).task_weights(history, targets, ew)
    sharp = _sge(temperature=0.05).task_weights(history, targets, ew)
    assert sharp[1] < soft[1]


def test_errors_skip_samples_a_model_trained_on():
    predicted = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    targets = torch.tensor([0, 0])
    weights = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    errors = SGEEstimator.errors(predicted, targets, weights)
    torch.testing.assert_close(errors, torch.tensor([0.0, 0.5]))


def test_same_seed_same_weights_and_prediction_is_deterministic():
    history, targets, ew = _history(6, bad=3)
    a = _sge(dropout=0.5).task_weights(history, targets, ew)
    b = _sge(dropout=0.5).task_weights(history, targets, ew)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    estimator = _sge(dropout=0.5)
    estimator.task_weights(history, targets, ew)
    # eval() when forecasting, zero initial state: the same forecast twice
    assert torch.equal(estimator.predict(history[-3:]), estimator.predict(history[-3:]))


def test_shape_mismatch_is_reported():
    history, targets, ew = _history(6, n_tasks=3)
    with pytest.raises(DataError, match="T=4"):
        _sge().task_weights(history, targets, ew)


def test_uniform_estimator():
    weights = UniformEstimator(5).task_weights(torch.zeros(0, 3, 5), torch.zeros(3), torch.zeros(3, 5))
    torch.testing.assert_close(weights, torch.full((5,), 0.2))


def test_estimators_are_registered_plugins():
    manager = get_manager()
    sge = manager.get("estimators", "sge")
    estimator = sge.factory(6, sge.parse_options({"window": 2, "train_steps": 1}))
    assert estimator.n_tasks == 6 and estimator.window == 2
    uniform = manager.get("estimators", "uniform")
    assert float(uniform.factory(3, uniform.parse_options({})).task_weights(None, None, None).sum()) == pytest.approx(
        1.0
    )
    with pytest.raises(InvalidOptionsError, match="window"):
        sge.parse_options({"windw": 3})


def test_a_task_that_generalises_worse_gets_clearly_less_than_uniform_weight():
    """Six tasks, one of whose base models scores the held-out anomalies badly: its weight falls well below 1/T,
    with the unified model's scores as the reference the errors are taken relative to."""
    n_tasks = 6
    history, targets, ew = _history(7, n_tasks=n_tasks)
    g = torch.Generator().manual_seed(1)
    anomalies = targets.bool()
    history[:, anomalies, 4] = (0.45 + 0.05 * torch.randn(7, int(anomalies.sum()), generator=g)).clamp(0, 1)
    reference = history[-1].mean(dim=1)
    estimator = SGEEstimator(n_tasks, SGEOptions(window=3, train_steps=60, lr=2e-2))
    for e in range(3, 8):
        weights = estimator.task_weights(history[:e], targets, ew, reference=reference)
    assert estimator.diagnostics["relative"] is True
    assert float(weights[4]) < 0.5 / n_tasks, weights
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-6)


def test_spread_temperature_leaves_equal_tasks_near_uniform():
    """Errors that differ only by noise stay within their sampling noise: the weights stay near 1/T."""
    history, targets, ew = _history(6, n_tasks=6)
    estimator = SGEEstimator(6, SGEOptions(window=3, train_steps=60, lr=2e-2))
    weights = estimator.task_weights(history, targets, ew, reference=history[-1].mean(dim=1))
    assert float(weights.max() / weights.min()) < 3.0, weights


def test_paper_temperature_keeps_weights_near_uniform_where_spread_separates():
    """The measured defect of the paper's form: softmax(-r) of errors in [0, 1] barely moves the weights."""
    history, targets, ew = _history(6, n_tasks=4, bad=2)
    paper = _sge(temperature_mode="absolute", relative_errors=False)
    ours = _sge()
    for e in range(3, 7):
        w_paper = paper.task_weights(history[:e], targets, ew)
        w_ours = ours.task_weights(history[:e], targets, ew)
    assert float(w_paper.max() - w_paper.min()) < float(w_ours.max() - w_ours.min())
    assert float(w_ours[2]) < 0.1
