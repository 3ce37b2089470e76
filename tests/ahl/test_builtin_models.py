"""AHL on the built-in DevNet and DRA scorers, built through the plugin manager; a real-data check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ahl_testkit import auc, map_data, thyroid_hard_setting, train_ahl, vector_data

from ahl_plugins.ahl import AHLOptions
from ahl_plugins.ahl.cdl import MetaLearner, TaskSampler, gather
from ahl_plugins.ahl.hadg import build_tasks
from ahl_plugins.plugins import get_manager

FAST = {"epochs": 3, "history": 2, "batch_size": 12, "outer_steps_per_epoch": 2}


def _model(name: str, spec, seed: int = 0):
    manager = get_manager()
    model = manager.model(name)
    scorer_entry, loss_entry = manager.get("scorers", model.scorer), manager.get("losses", model.loss)
    torch.manual_seed(seed)
    scorer = scorer_entry.factory(spec, scorer_entry.parse_options(dict(model.scorer_options)))
    loss = loss_entry.factory(loss_entry.parse_options(dict(model.loss_options)))
    return scorer, loss


@pytest.mark.parametrize("model", ["devnet", "dra"])
@pytest.mark.parametrize("kind", ["vector", "map"])
def test_ahl_trains_builtin_models(model, kind):
    data = vector_data(scales=2) if kind == "vector" else map_data()
    scorer, loss = _model(model, data.normals.spec)
    before = {k: v.clone() for k, v in scorer.named_parameters()}
    trained, history = train_ahl(scorer, loss, data, AHLOptions(**FAST), seed=0)
    assert history["vectorized"] is (kind == "vector")
    assert history["epochs"][-1]["estimator"] is None and history["epochs"][1]["estimator"]["status"] == "sge"
    changed = [k for k, v in trained.named_parameters() if not torch.equal(before[k], v)]
    assert changed, "no parameter moved"
    with torch.no_grad():
        scores = trained.combine(trained(data.seen.as_list()))
    assert scores.shape == (len(data.seen),) and torch.isfinite(scores).all()


@pytest.mark.parametrize("model", ["devnet", "dra"])
def test_builtin_models_are_vmappable_and_match_the_loop(model):
    """Same meta-gradient either way (compared before Adam, which would magnify rounding in ~zero gradients)."""
    data = map_data(n_normals=24)
    features, _ = data.stacked()
    taskset = build_tasks(data, seed=0)
    batch = TaskSampler(taskset, 12, torch.Generator().manual_seed(0)).draw()
    support, query = gather(features.as_list(), batch.support_rows), gather(features.as_list(), batch.query_rows)
    results = []
    for vectorize in (True, False):
        scorer, loss = _model(model, data.normals.spec)
        scorer.prepare(data.normals.as_list(), torch.Generator().manual_seed(0))
        learner = MetaLearner(scorer, loss, inner_steps=2, inner_lr=1e-2, vectorize=vectorize)
        losses, _, _ = learner.task_losses(support, batch.support_labels, query, batch.query_labels)
        grads = torch.autograd.grad(losses.mean(), list(learner.parameters.values()), allow_unused=True)
        assert learner.vectorized is vectorize
        results.append((losses, grads))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    for g, h in zip(results[0][1], results[1][1], strict=True):
        if g is None or h is None:
            assert g is None and h is None
        else:
            torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-5)


def test_ensemble_ablation_on_dra():
    data = vector_data()
    ensemble, _ = train_ahl(*_model("dra", data.normals.spec), data, AHLOptions(**FAST, ablation="ensemble"), seed=0)
    with torch.no_grad():
        x = data.seen.as_list()
        members = torch.stack([m.combine(m(x)) for m in ensemble.members])
        torch.testing.assert_close(ensemble.combine(ensemble(x)), members.mean(dim=0), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_ahl_devnet_is_not_worse_than_devnet_on_real_data(shared_data):
    """ann_thyroid, hard setting (seen: 10 of class 2; test: test normals + class 1), 3 seeds."""
    from ahl_plugins.training.base import TrainOptions, train_base

    path = shared_data / "tabular" / "pmlb" / "ann_thyroid.tsv.gz"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    base, ahl = [], []
    for seed in range(3):
        data, test, labels = thyroid_hard_setting(path, seed)
        scorer, loss = _model("devnet", data.normals.spec, seed)
        train_base(scorer, loss, data, TrainOptions(), seed=seed)
        with torch.no_grad():
            base.append(auc(scorer.combine(scorer(test.as_list())), labels))
        scorer, loss = _model("devnet", data.normals.spec, seed)
        trained, history = train_ahl(scorer, loss, data, AHLOptions(), seed=seed)
        with torch.no_grad():
            ahl.append(auc(trained.combine(trained(test.as_list())), labels))
        assert history["n_tasks"] == 6
    noise = max(np.std(base), np.std(ahl), 0.01)
    assert np.mean(ahl) >= np.mean(base) - noise, f"AHL(DevNet) {ahl} vs DevNet {base}"
    assert np.mean(ahl) > 0.9, ahl
