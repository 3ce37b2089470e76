"""The AHL guard (issue 31): held-out training evidence decides between AHL's unified model and the base loop."""

from __future__ import annotations

import json

import numpy as np
import torch
from ahl_testkit import VectorScorer, deviation_loss, vector_data

from ahl_plugins.ahl import AHLOptions, guard
from ahl_plugins.components import build_estimator
from ahl_plugins.plugins import get_manager

FAST = {"epochs": 3, "history": 2, "batch_size": 12, "outer_steps_per_epoch": 2, "batches_per_epoch": 2}


def _estimator(options: AHLOptions):
    return lambda n_tasks: build_estimator(get_manager(), options, n_tasks, 0)


def _run(options: AHLOptions, data=None):
    data = data or vector_data(n_normals=90, pools={"left": 30, "right": 30})
    torch.manual_seed(0)
    scorer = VectorScorer(data.normals.spec)
    return guard.train_ahl_guarded(scorer, deviation_loss, data, options, seed=0, estimator=_estimator(options))


class Negated(torch.nn.Module):
    """A constructed bad AHL model: the trained scorer with its score's sign flipped."""

    head_names = ("score",)

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, features):
        return {"score": -self.inner(features)["score"]}

    def combine(self, heads):
        return heads["score"]


def test_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    normals, anomalies = np.array([0.1, 0.4, 0.4, 0.2]), np.array([0.4, 0.9, 0.3])
    expected = roc_auc_score([0] * 4 + [1] * 3, np.concatenate([normals, anomalies]))
    assert abs(guard.auc(normals, anomalies) - expected) < 1e-12


def test_decide_falls_back_only_beyond_the_tolerance():
    assert guard.decide(0.80, 0.90, 0.05)[0] == "base"
    assert guard.decide(0.86, 0.90, 0.05)[0] == "ahl"
    assert guard.decide(0.95, 0.90, 0.05)[0] == "ahl"
    # the default tolerance 0: AHL must be at least as good as the base loop on the held-out part; a tie keeps it
    assert guard.decide(0.89, 0.90, 0.0)[0] == "base"
    assert guard.decide(0.90, 0.90, 0.0)[0] == "ahl"


def test_holdout_keeps_every_labelled_anomaly_and_splits_normals_and_pools():
    data = vector_data(n_normals=90, n_seen=3, pools={"left": 30, "right": 30})
    kept, held_normals, held_pseudo = guard.holdout_split(data, 0.2, seed=0)
    assert len(held_normals) == 18 and len(kept.normals) == 72
    assert len(held_pseudo) == 12 and {k: len(v) for k, v in kept.pseudo.items()} == {"left": 24, "right": 24}
    assert len(kept.seen) == 3
    # held-out rows are not in the training part
    kept_rows = {tuple(r.tolist()) for r in kept.normals.as_list()[0]}
    assert not any(tuple(r.tolist()) in kept_rows for r in held_normals.as_list()[0])


def test_guard_records_its_choice_and_keeps_ahl_when_it_generalises():
    _, history = _run(AHLOptions(**FAST, guard_tolerance=0.05))
    record = history["guard"]
    json.dumps(record)
    assert record["enabled"] and record["chosen"] in ("ahl", "base")
    assert record["held_out"] == {"normals": 18, "pseudo": 12, "share": 0.2}
    assert set(record["evidence"]) == {"ahl", "base"} and record["reason"] and record["refit"]
    # the held-out part only decides: the chosen model is refitted on all 90 normals
    assert sum(history["clustering"]["sizes"]) == 90


def test_a_guarded_fit_that_keeps_ahl_scores_as_the_unguarded_fit():
    data = vector_data(n_normals=90, pools={"left": 30, "right": 30})
    guarded, history = _run(AHLOptions(**FAST, guard_tolerance=0.05), data)
    assert history["guard"]["chosen"] == "ahl"
    plain, _ = _run(AHLOptions(**FAST, guard=False), data)
    x = data.normals.as_list()
    torch.testing.assert_close(guarded(x)["score"], plain(x)["score"])


def test_without_refit_the_models_are_those_trained_without_the_held_out_part():
    _, history = _run(AHLOptions(**FAST, guard_refit=False))
    assert history["guard"]["refit"] is False and sum(history["clustering"]["sizes"]) == 72


def test_guard_falls_back_to_the_base_model_when_ahl_is_worse_on_held_out_data(monkeypatch):
    original = guard.train_ahl

    def worse_ahl(scorer, *args, **kwargs):
        trained, history = original(scorer, *args, **kwargs)
        return Negated(trained).eval(), history

    monkeypatch.setattr(guard, "train_ahl", worse_ahl)
    scorer, history = _run(AHLOptions(**FAST))
    record = history["guard"]
    assert record["chosen"] == "base", record
    assert record["evidence"]["ahl"] < record["evidence"]["base"] - record["tolerance"]
    assert not isinstance(scorer, Negated) and isinstance(scorer, VectorScorer)
    assert len(record["base_epochs"]) == FAST["epochs"]
    # the base model refitted on all the data: what the base loop alone gives
    data = vector_data(n_normals=90, pools={"left": 30, "right": 30})
    torch.manual_seed(0)
    base = VectorScorer(data.normals.spec)
    guard.train_base(base, deviation_loss, data, guard.base_options(AHLOptions(**FAST)), seed=0)
    x = data.normals.as_list()
    torch.testing.assert_close(scorer(x)["score"], base.eval()(x)["score"])
    assert "base_epochs" not in guard.guard_summary(history)


def test_guard_off_trains_ahl_on_all_the_data():
    _, history = _run(AHLOptions(**FAST, guard=False))
    assert history["guard"] == {"enabled": False, "chosen": "ahl", "reason": "guard off (guard=False)"}
    assert sum(history["clustering"]["sizes"]) == 90


def test_guard_is_skipped_with_too_few_samples_and_says_why():
    data = vector_data(n_normals=30, pools={"left": 10, "right": 10})
    _, history = _run(AHLOptions(**FAST, min_cluster_size=2), data)
    assert history["guard"]["chosen"] == "ahl" and "too few" in history["guard"]["reason"]
    assert sum(history["clustering"]["sizes"]) == 30
