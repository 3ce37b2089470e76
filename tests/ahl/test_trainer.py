"""AHL end to end: vector and map features, a plugin scorer, ablations, history, determinism."""

from __future__ import annotations

import json

import pytest
import torch
from ahl_testkit import (
    ItemScorer,
    MapScorer,
    VectorScorer,
    auc,
    deviation_loss,
    map_data,
    train_ahl,
    vector_data,
)

from ahl_plugins import ModelSpec, hookimpl
from ahl_plugins.ahl import AHLOptions, EnsembleScorer
from ahl_plugins.ahl.hadg import build_tasks
from ahl_plugins.ahl.sge import estimation_samples, normalise_scores
from ahl_plugins.errors import InvalidOptionsError
from ahl_plugins.features.store import Features
from ahl_plugins.plugins import get_manager

FAST = {"epochs": 3, "history": 2, "batch_size": 12, "outer_steps_per_epoch": 2, "batches_per_epoch": 2}


def _scorer(cls, data, seed=0):
    torch.manual_seed(seed)
    return cls(data.normals.spec)


def test_vector_features_end_to_end_and_history_format():
    data = vector_data()
    scorer, history = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, AHLOptions(**FAST), seed=0)
    json.dumps(history)  # JSON-friendly
    assert not scorer.training
    assert history["n_tasks"] == 6 and len(history["tasks"]) == 6
    assert history["clustering"]["sizes"] == [20, 20, 20]
    assert history["vectorized"] is True and history["estimator"] == "sge"
    epochs = history["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    for record in epochs:
        assert sum(record["weights"]) == pytest.approx(1.0, abs=1e-5)
        assert len(record["query_losses"]) == 6 and len(record["support_losses"]) == 6
    # K = 2: epochs 1 and 2 train with uniform weights, epoch 3 with SGE's
    assert epochs[0]["weights"] == epochs[1]["weights"] == [pytest.approx(1 / 6)] * 6
    assert epochs[1]["estimator"]["status"] == "sge"
    assert epochs[2]["weights"] == epochs[1]["next_weights"]
    assert epochs[2]["weights"] != epochs[1]["weights"]
    assert set(history["timing"]) >= {"total_seconds", "meta_seconds", "estimator_seconds"}


def test_map_features_end_to_end():
    data = map_data()
    scorer, history = train_ahl(_scorer(MapScorer, data), deviation_loss, data, AHLOptions(**FAST), seed=0)
    assert history["vectorized"] is False  # auto: maps run as a loop over tasks
    out = scorer(data.normals.as_list())
    assert out["score"].shape == (len(data.normals),)
    vmapped, history = train_ahl(
        _scorer(MapScorer, data), deviation_loss, data, AHLOptions(**FAST, task_batching="vmap"), seed=0
    )
    assert history["vectorized"] is True
    for x, y in zip(scorer.state_dict().values(), vmapped.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_learns_to_separate_and_updates_every_step():
    data = vector_data(n_normals=90)
    scorer = _scorer(VectorScorer, data)
    before = {k: v.clone() for k, v in scorer.state_dict().items()}
    options = AHLOptions(epochs=6, history=3, outer_lr=1e-2, batch_size=24, task_batch_size=24, outer_steps_per_epoch=8)
    scorer, history = train_ahl(scorer, deviation_loss, data, options, seed=0)
    assert all(not torch.equal(before[k], v) for k, v in scorer.state_dict().items())
    first, last = history["epochs"][0]["objective"], history["epochs"][-1]["objective"]
    assert last < 0.5 * first
    test = vector_data(n_normals=60, n_seen=20, seed=1)
    with torch.no_grad():
        scores = torch.cat([scorer.combine(scorer(d.as_list())) for d in (test.normals, test.seen)])
    labels = torch.cat([torch.zeros(len(test.normals)), torch.ones(len(test.seen))])
    assert auc(scores, labels) > 0.95


def test_same_seed_same_model_other_seed_other_model():
    data = vector_data()
    options = AHLOptions(**FAST)
    a, ha = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, options, seed=3)
    b, hb = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, options, seed=3)
    c, _ = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, options, seed=4)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert [e["weights"] for e in ha["epochs"]] == [e["weights"] for e in hb["epochs"]]
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values(), strict=True))


def test_global_rng_is_left_alone():
    data = vector_data()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_ahl(_scorer(VectorScorer, data, seed=1), deviation_loss, data, AHLOptions(**FAST), seed=0)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), expected)


def test_unvmappable_scorer_trains_through_the_loop():
    data = vector_data()
    scorer, history = train_ahl(_scorer(ItemScorer, data), deviation_loss, data, AHLOptions(**FAST), seed=0)
    assert history["vectorized"] is False
    reference, _ = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, AHLOptions(**FAST), seed=0)
    for x, y in zip(scorer.state_dict().values(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_ablation_uniform_keeps_equal_weights():
    data = vector_data()
    _, history = train_ahl(
        _scorer(VectorScorer, data), deviation_loss, data, AHLOptions(**FAST, ablation="uniform"), seed=0
    )
    assert history["estimator"] == "uniform"
    for record in history["epochs"]:
        assert record["weights"] == [pytest.approx(1 / 6)] * 6


def test_ablation_random_tasks():
    data = vector_data()
    _, history = train_ahl(
        _scorer(VectorScorer, data), deviation_loss, data, AHLOptions(**FAST, ablation="random_tasks"), seed=0
    )
    assert {t["kind"] for t in history["tasks"]} == {"random_groups"}
    assert history["n_tasks"] == 6


def test_query_normals_option_reaches_the_tasks():
    data = vector_data()
    _, history = train_ahl(
        _scorer(VectorScorer, data), deviation_loss, data, AHLOptions(**FAST, query_normals="all"), seed=0
    )
    assert history["options"]["query_normals"] == "all"
    assert {t["query"]["normals"] for t in history["tasks"]} == {len(data.normals)}
    assert all(t["query_cluster"] is None for t in history["tasks"])


def test_ablation_ensemble_averages_member_scores():
    data = map_data()
    ensemble, history = train_ahl(
        _scorer(MapScorer, data), deviation_loss, data, AHLOptions(**FAST, ablation="ensemble"), seed=0
    )
    assert isinstance(ensemble, EnsembleScorer) and len(ensemble.members) == 6
    assert history["epochs"][0]["member_losses"] and len(history["epochs"][0]["member_losses"]) == 6
    x = data.seen.as_list()
    with torch.no_grad():
        members = torch.stack([m.combine(m(x)) for m in ensemble.members])
        torch.testing.assert_close(ensemble.combine(ensemble(x)), members.mean(dim=0))
    assert not torch.equal(members[0], members[1])  # trained on different tasks


def test_ensemble_members_match_independent_training():
    """Stacked training is exactly T independent runs: compare a loop-trained ensemble with the vmapped one."""
    data = vector_data()
    a, _ = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, AHLOptions(**FAST, ablation="ensemble"), seed=0)
    b, _ = train_ahl(
        _scorer(VectorScorer, data),
        deviation_loss,
        data,
        AHLOptions(**FAST, ablation="ensemble", task_batching="loop"),
        seed=0,
    )
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_normalised_scores_are_per_model_min_max():
    scores = torch.tensor([[1.0, 3.0, 5.0], [2.0, 2.0, 2.0]])
    torch.testing.assert_close(normalise_scores(scores), torch.tensor([[0.0, 0.5, 1.0], [0.5, 0.5, 0.5]]))


def test_error_weights_follow_the_paper():
    data = vector_data(n_seen=4, pools={"a": 3, "b": 3})
    taskset = build_tasks(data, seed=0)
    _, labels = data.stacked()
    rows, targets, weights = estimation_samples(taskset, labels)
    assert rows.numel() == len(labels) and weights.shape == (rows.numel(), 6)
    for i, task in enumerate(taskset):
        s_rows, _ = taskset.layout.rows(task, "support")
        support = set(s_rows.tolist())
        for j, row in enumerate(rows.tolist()):
            if row in support:
                expected = 0.0 if targets[j] == 0 else 0.5
            else:
                expected = 1.0 if targets[j] == 1 else 0.5
            assert weights[j, i] == expected


def test_estimation_samples_are_capped_keeping_every_seen_anomaly():
    data = vector_data(n_normals=90, n_seen=6, pools={"a": 40, "b": 40})
    taskset = build_tasks(data, seed=0)
    _, labels = data.stacked()
    rows, _, _ = estimation_samples(taskset, labels, cap=40, seed=1)
    picked = labels[rows]
    assert rows.numel() == 40 and len(set(rows.tolist())) == 40
    assert int((picked == 1).sum()) == 6
    assert int((picked == 0).sum()) == 17 and int((picked == 2).sum()) == 17
    again, _, _ = estimation_samples(taskset, labels, cap=40, seed=1)
    assert torch.equal(rows, again)


def test_misspelt_options_are_rejected():
    data = vector_data()
    with pytest.raises(InvalidOptionsError, match="n_clusters"):
        train_ahl(_scorer(VectorScorer, data), deviation_loss, data, {"n_cluster": 3}, seed=0)


def test_window_given_twice_must_agree():
    data = vector_data()
    options = AHLOptions(**{**FAST, "estimator_options": {"window": 4}})
    with pytest.raises(InvalidOptionsError, match="history"):
        train_ahl(_scorer(VectorScorer, data), deviation_loss, data, options, seed=0)


class _ThirdPartyPlugin:
    """A test-only plugin: its own scorer, loss and model, registered through the hooks."""

    @hookimpl
    def ahl_register_scorers(self, register):
        register("test-mlp", lambda spec, options: VectorScorer(spec, hidden=5), description="test only")

    @hookimpl
    def ahl_register_losses(self, register):
        register("test-deviation", lambda options: deviation_loss, description="test only")

    @hookimpl
    def ahl_register_models(self, register):
        register("test-model", ModelSpec(scorer="test-mlp", loss="test-deviation", description="test only"))


def test_ahl_wraps_a_third_party_plugin_model(fresh_manager):
    manager = get_manager()
    data = vector_data(scales=2)
    with manager.temporary_plugin(_ThirdPartyPlugin(), "third-party-test"):
        model = manager.model("test-model")
        torch.manual_seed(0)
        scorer = manager.get("scorers", model.scorer).factory(data.normals.spec, None)
        loss = manager.get("losses", model.loss).factory(None)
        trained, history = train_ahl(scorer, loss, data, AHLOptions(**FAST), seed=0)
    assert history["vectorized"] is True
    assert trained.mlps[0][0].out_features == 5
    assert torch.isfinite(trained.combine(trained(data.seen.as_list()))).all()


def test_features_that_do_not_stack_are_a_data_error():
    from ahl_plugins.errors import DataError
    from ahl_plugins.training.data import TrainingData

    data = vector_data()
    broken = TrainingData(data.normals, Features((torch.zeros(2, 3),)), {})
    with pytest.raises(DataError, match="same feature extractor"):
        train_ahl(_scorer(VectorScorer, data), deviation_loss, broken, AHLOptions(**FAST), seed=0)


def test_rank_normalisation_is_scale_free_and_shares_ties():
    from ahl_plugins.ahl.sge import rank_scores

    scores = torch.tensor([[0.0, 10.0, 1e6, 5.0], [1.0, 1.0, 1.0, 1.0], [3.0, 1.0, 1.0, 2.0]])
    ranks = rank_scores(scores)
    torch.testing.assert_close(ranks[0], torch.tensor([0.0, 2 / 3, 1.0, 1 / 3]))
    torch.testing.assert_close(ranks[1], torch.full((4,), 0.5))
    torch.testing.assert_close(ranks[2], torch.tensor([1.0, 1 / 6, 1 / 6, 2 / 3]))
    # an outlier does not squash the rest, as min-max does
    assert float(normalise_scores(scores[:1], "minmax")[0, 1]) < 1e-4


def test_query_size_prior_weighs_tasks_by_their_query_normals():
    from ahl_plugins.ahl.sge import task_prior
    from ahl_plugins.training.data import TrainingData

    g = torch.Generator().manual_seed(0)
    centres = torch.eye(4)[:3] * 8.0
    normals = torch.cat([centres[c] + torch.randn(n, 4, generator=g) for c, n in enumerate((40, 10, 10))])
    seen = torch.randn(6, 4, generator=g) + 5.0
    data = TrainingData(Features.of([normals]), Features.of([seen]))
    taskset = build_tasks(data, seed=0)
    prior = task_prior(taskset, "query_size")
    sizes = torch.tensor([t.query_normals.size for t in taskset], dtype=torch.float32)
    assert sorted(set(sizes.tolist())) == [10.0, 40.0]
    torch.testing.assert_close(prior, sizes / sizes.sum())
    assert float(prior.max()) == pytest.approx(40 / 120)
    torch.testing.assert_close(task_prior(taskset, "uniform"), torch.full((len(taskset),), 1 / len(taskset)))
    # pair_size: the two tasks between the 10-normal clusters weigh 100 / (4·400 + 2·100) each, a quarter of the rest
    pair = task_prior(taskset, "pair_size")
    small = [i for i, t in enumerate(taskset) if t.support_normals.size == 10 and t.query_normals.size == 10]
    assert len(small) == 2
    assert all(float(pair[i]) == pytest.approx(100 / 1800) for i in small)
    assert float(pair.sum()) == pytest.approx(1.0)


def test_history_records_how_far_the_base_models_moved_and_how_they_differ():
    data = vector_data()
    _, history = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, AHLOptions(**FAST), seed=0)
    for record in history["epochs"]:
        assert len(record["inner_change"]) == 6
        assert all(c == pytest.approx(0.05, rel=1e-3) for c in record["inner_change"])  # relative step, 1 inner step
        assert record["base_score_spread"] > 0.0
    paper = AHLOptions(**{**FAST, "inner_update": "sgd", "inner_lr": 2e-4, "inner_steps": 3})
    _, history = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, paper, seed=0)
    assert max(max(r["inner_change"]) for r in history["epochs"]) < 5e-3


def test_default_update_budget_matches_the_base_loop():
    """lr × updates per epoch, and the decay schedule, are the base loop's: the paired gain compares learners."""
    from ahl_plugins.training.base import TrainOptions

    ahl, base = AHLOptions(), TrainOptions()
    assert ahl.outer_lr * ahl.n_outer_steps == pytest.approx(base.lr * base.batches_per_epoch)
    assert (ahl.lr_step, ahl.lr_gamma, ahl.epochs, ahl.weight_decay) == (
        base.lr_step,
        base.lr_gamma,
        base.epochs,
        base.weight_decay,
    )


def test_warm_start_continues_the_base_loop_in_one_budget_and_one_decay():
    """warm_start = 0.5: the base loop trains epochs 1-2 (the lr of AHL's budget), meta-training 3-4 from its model."""
    from ahl_plugins.training.base import TrainOptions, train_base

    data = vector_data()
    options = AHLOptions(**{**FAST, "epochs": 4, "lr_step": 2, "warm_start": 0.5})
    scorer, history = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, options, seed=0)
    base_options = TrainOptions(epochs=2, batch_size=12, batches_per_epoch=2, lr=options.outer_lr * 2 / 2, lr_step=2)
    base = _scorer(VectorScorer, data)
    base_history = train_base(base, deviation_loss, data, base_options, seed=0)
    assert history["warm_start_epochs"] == base_history
    assert [e["epoch"] for e in history["epochs"]] == [3, 4]
    assert [e["lr"] for e in history["epochs"]] == [pytest.approx(options.outer_lr * 0.1)] * 2  # the decay at epoch 3
    assert any(
        not torch.equal(x, y) for x, y in zip(scorer.state_dict().values(), base.state_dict().values(), strict=True)
    )
    ensemble, history = train_ahl(
        _scorer(VectorScorer, data), deviation_loss, data, options.model_copy(update={"ablation": "ensemble"}), seed=0
    )
    assert len(history["warm_start_epochs"]) == 2 and [e["epoch"] for e in history["epochs"]] == [3, 4]
    with pytest.raises(InvalidOptionsError, match="warm_start"):
        train_ahl(_scorer(VectorScorer, data), deviation_loss, data, {"warm_start": 1.0}, seed=0)


def test_support_references_reach_every_base_model_under_vmap_and_the_loop():
    """task_references="support": DRA's base models search only their support normals; vmap == loop."""
    from builtin_plugins.dra import DRAOptions, build_loss, build_scorer

    data = vector_data()

    def fit(**extra):
        torch.manual_seed(0)
        scorer = build_scorer(data.normals.spec, DRAOptions(n_neighbors=2))
        return train_ahl(scorer, build_loss(), data, AHLOptions(**FAST, **extra), seed=0)

    support, history = fit(task_references="support")
    looped, _ = fit(task_references="support", task_batching="loop")
    whole, _ = fit()
    for x, y in zip(support.state_dict().values(), looped.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    assert any(
        not torch.allclose(x, y)
        for x, y in zip(support.state_dict().values(), whole.state_dict().values(), strict=True)
    )
    assert support.reference_excluded.numel() == 0  # the unified model scores with its whole bank
    assert history["vectorized"] is True


def test_task_buffers_that_are_not_the_scorer_s_buffers_are_a_clear_error():
    from ahl_plugins.errors import AHLError

    class Restricting(VectorScorer):
        def task_buffers(self, support_normals):
            return {"bank_mask": torch.zeros(len(support_normals), 3)}

    data = vector_data()
    support = AHLOptions(**FAST, task_references="support")
    with pytest.raises(AHLError, match=r"task_buffers returned \['bank_mask'\].*buffer of the scorer"):
        train_ahl(_scorer(Restricting, data), deviation_loss, data, support, seed=0)
    with pytest.raises(InvalidOptionsError, match="needs a scorer with task_buffers"):
        train_ahl(_scorer(VectorScorer, data), deviation_loss, data, support, seed=0)


def test_support_loss_weight_reaches_the_meta_objective():
    data = vector_data()
    plain, h0 = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, AHLOptions(**FAST), seed=0)
    both, h1 = train_ahl(
        _scorer(VectorScorer, data), deviation_loss, data, AHLOptions(**FAST, support_loss_weight=1.0), seed=0
    )
    first = h1["epochs"][0]
    assert first["objective"] == pytest.approx(
        sum(
            w * (q + s)
            for w, q, s in zip(first["weights"], first["query_losses"], first["support_losses"], strict=True)
        ),
        rel=1e-5,
    )
    assert any(
        not torch.equal(x, y) for x, y in zip(plain.state_dict().values(), both.state_dict().values(), strict=True)
    )


def test_adapted_mean_final_model_averages_the_adapted_base_models():
    """final_model="adapted_mean": θ_g moves by the weighted mean of T relative steps, so by 0 < ‖Δ‖ ≤ 5% of ‖θ‖."""
    data = vector_data()
    unified, h0 = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, AHLOptions(**FAST), seed=0)
    options = AHLOptions(**FAST, final_model="adapted_mean")
    mean, h1 = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, options, seed=0)
    again, _ = train_ahl(_scorer(VectorScorer, data), deviation_loss, data, options, seed=0)
    assert h0["final_model"] == {"kind": "unified", "relative_change": None}
    assert h1["final_model"]["kind"] == "adapted_mean"
    assert 0.0 < h1["final_model"]["relative_change"] <= 0.05 + 1e-6
    # meta-training itself is unchanged: the step is taken once, after the last epoch
    assert [e["query_losses"] for e in h1["epochs"]] == [e["query_losses"] for e in h0["epochs"]]
    assert any(
        not torch.equal(x, y) for x, y in zip(unified.state_dict().values(), mean.state_dict().values(), strict=True)
    )
    for x, y in zip(mean.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y)
