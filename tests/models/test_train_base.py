from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.errors import DataError, TrainingDivergedError
from ahl_plugins.features.store import Features
from ahl_plugins.seeding import seeded
from ahl_plugins.training.base import TrainOptions, train_base
from ahl_plugins.training.data import TrainingData
from ahl_plugins.training.scoring import score_features
from builtin_plugins.devnet import build_scorer as build_devnet
from builtin_plugins.dra import DRAOptions
from builtin_plugins.dra import build_loss as build_dra_loss
from builtin_plugins.dra import build_scorer as build_dra
from builtin_plugins.losses import build_deviation_loss

FAST = TrainOptions(epochs=4, batches_per_epoch=5, batch_size=24, lr=1e-2, lr_step=2)


def devnet(dim: int = 6, seed: int = 0):
    with seeded(seed):
        return build_devnet(FeatureSpec("vector", (dim,)))


def test_options_defaults_and_strictness():
    options = TrainOptions()
    assert (options.epochs, options.batch_size, options.batches_per_epoch) == (30, 48, 20)
    assert (options.lr, options.weight_decay, options.lr_step, options.lr_gamma, options.grad_clip) == (
        2e-4,
        1e-5,
        10,
        0.1,
        1.0,
    )
    with pytest.raises(ValidationError, match="epoch"):
        TrainOptions(epoch=3)
    with pytest.raises(ValidationError):
        TrainOptions(lr=-1.0)


def test_seeded_makes_initialisation_reproducible_without_touching_global_state():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b, c = devnet(seed=5), devnet(seed=5), devnet(seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.heads[0].body[0].weight, b.heads[0].body[0].weight)
    assert not torch.equal(a.heads[0].body[0].weight, c.heads[0].body[0].weight)


def test_history_lr_schedule_and_eval_mode(vector_data):
    scorer = devnet()
    history = train_base(scorer, build_deviation_loss(), vector_data(), FAST, seed=0)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert [h["lr"] for h in history] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])
    assert all(np.isfinite(h["loss"]) for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    assert not scorer.training


def test_same_seed_same_model_different_seed_different(vector_data):
    data = vector_data()
    runs = []
    for seed in (0, 0, 1):
        scorer = devnet(seed=0)
        history = train_base(scorer, build_deviation_loss(), data, FAST, seed=seed)
        runs.append((history, score_features(scorer, data.normals)))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][1], runs[2][1])


@pytest.mark.parametrize("model", ["devnet", "dra"])
def test_learns_a_separable_problem(model, vector_data):
    data = vector_data()
    scorer = devnet() if model == "devnet" else build_dra(FeatureSpec("vector", (6,)))
    loss = build_deviation_loss() if model == "devnet" else build_dra_loss()
    train_base(scorer, loss, data, TrainOptions(epochs=6, batches_per_epoch=10, lr=5e-3, lr_step=5), seed=0)
    test = vector_data(seed=1)
    x = Features.cat([test.normals, test.seen, test.all_pseudo()])
    y = np.r_[np.zeros(len(test.normals)), np.ones(len(test.seen) + len(test.all_pseudo()))]
    assert roc_auc_score(y, score_features(scorer, x)) > 0.95


def test_prepare_gets_the_training_normals(vector_data):
    base = vector_data()
    normals = Features.of([torch.full((20, 6), 2.5)])
    data = TrainingData(normals, base.seen, base.pseudo)
    scorer = build_dra(FeatureSpec("vector", (6,)))
    train_base(scorer, build_dra_loss(), data, TrainOptions(epochs=1, batches_per_epoch=1), seed=0)
    bank = scorer.reference(0)  # the nearest-normal bank: the training normals themselves
    assert bank.shape == (20, 6) and torch.equal(bank, torch.full((20, 6), 2.5))


def test_training_with_only_normals_is_refused(vector_data):
    data = vector_data(n_seen=0, n_pseudo=0)
    with pytest.raises(DataError, match="at least one labelled anomaly"):
        train_base(devnet(), build_deviation_loss(), data, FAST, seed=0)


def test_pseudo_anomalies_alone_are_enough(vector_data):
    history = train_base(devnet(), build_deviation_loss(), vector_data(n_seen=0), FAST, seed=0)
    assert len(history) == FAST.epochs


def test_non_finite_features_stop_training_with_a_clear_error(vector_data):
    data = vector_data()
    bad = TrainingData(Features.of([data.normals.scales[0] * float("nan")]), data.seen, data.pseudo)
    with pytest.raises(TrainingDivergedError, match="NaN/inf"):
        train_base(devnet(), build_deviation_loss(), bad, FAST, seed=0)


def test_progress_bar_can_be_turned_on_and_off(vector_data, capsys):
    train_base(devnet(), build_deviation_loss(), vector_data(), FAST, seed=0, progress=False)
    assert capsys.readouterr().err == ""
    train_base(devnet(), build_deviation_loss(), vector_data(), FAST, seed=0, progress=True)
    assert "training" in capsys.readouterr().err


def test_grad_clip_can_be_disabled(vector_data):
    options = FAST.model_copy(update={"grad_clip": None})
    history = train_base(devnet(), build_deviation_loss(), vector_data(), options, seed=0)
    assert len(history) == FAST.epochs


def map_set(n: int, bump: float, generator: torch.Generator) -> Features:
    """4×5×5 maps; anomalies carry a local bump on a 2×2 patch (what top-k MIL pooling is for)."""
    x = torch.randn(n, 4, 5, 5, generator=generator)
    if bump:
        rows = torch.randint(0, 4, (n,), generator=generator)
        for i, r in enumerate(rows.tolist()):
            x[i, :, r : r + 2, r : r + 2] += bump
    return Features.of([x])


@pytest.mark.parametrize("model", ["devnet", "dra"])
def test_learns_local_anomalies_on_maps(model):
    g = torch.Generator().manual_seed(0)
    data = TrainingData(map_set(48, 0, g), map_set(6, 3.0, g), {"synthetic": map_set(24, -3.0, g)})
    spec = FeatureSpec("map", (4,))
    with seeded(0):
        scorer = build_devnet(spec) if model == "devnet" else build_dra(spec, DRAOptions(normal_hidden=16))
    loss = build_deviation_loss() if model == "devnet" else build_dra_loss()
    train_base(scorer, loss, data, TrainOptions(epochs=3, batches_per_epoch=8, lr=1e-2, lr_step=5), seed=0)
    test_normal, test_seen = map_set(40, 0, g), map_set(40, 3.0, g)
    y = np.r_[np.zeros(40), np.ones(40)]
    assert roc_auc_score(y, score_features(scorer, Features.cat([test_normal, test_seen]))) > 0.9
