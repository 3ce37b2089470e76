"""Issue 31: where HADG puts the one labelled anomaly (and the pseudo anomalies) when M = 1.

The paper's tasks (``single_anomaly="both"``) hold the one anomaly in every support and query set, so the
inner step fits it and the unified model never has to; ``"query"`` keeps it out of every support set, and
``"query_normal_support"`` keeps the pseudo anomalies out of them too (``docs/when_ahl_hurts.md``).
"""

from __future__ import annotations

import pytest
import torch
from ahl_testkit import vector_data

from ahl_plugins.ahl import AHLOptions
from ahl_plugins.ahl.cdl import TaskSampler
from ahl_plugins.ahl.hadg import build_tasks
from ahl_plugins.ahl.options import PAPER_AHL_OPTIONS
from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN
from ahl_plugins.errors import DataError


def test_query_puts_the_one_anomaly_in_every_query_set_and_no_support_set():
    data = vector_data(n_seen=1)
    taskset = build_tasks(data, single_anomaly="query", seed=0)
    seen_row = len(data.normals)
    for task in taskset:
        support_rows, support_labels = taskset.layout.rows(task, "support")
        query_rows, query_labels = taskset.layout.rows(task, "query")
        assert not (support_labels == LABEL_SEEN).any() and seen_row not in support_rows.tolist()
        assert query_rows[query_labels == LABEL_SEEN].tolist() == [seen_row]


def test_query_batches_hold_the_anomaly_and_support_batches_never_do():
    data = vector_data(n_seen=1)
    taskset = build_tasks(data, single_anomaly="query", seed=0)
    sampler = TaskSampler(taskset, batch_size=9, generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        batch = sampler.draw()
        assert not (batch.support_labels == LABEL_SEEN).any()
        assert ((batch.query_labels == LABEL_SEEN).sum(dim=1) == 3).all()


def test_query_normal_support_leaves_support_sets_of_normals_only_at_m1():
    data = vector_data(n_seen=1)
    taskset = build_tasks(data, single_anomaly="query_normal_support", seed=0)
    for task in taskset:
        _, support_labels = taskset.layout.rows(task, "support")
        _, query_labels = taskset.layout.rows(task, "query")
        assert set(support_labels.tolist()) == {LABEL_NORMAL}
        assert {LABEL_SEEN, LABEL_PSEUDO} <= set(query_labels.tolist())
        assert task.support_generator is None and task.query_generator is not None


@pytest.mark.parametrize("value", ["query", "query_normal_support"])
def test_the_option_changes_nothing_when_m_is_two_or_more(value):
    data = vector_data(n_seen=4)
    paper = build_tasks(data, single_anomaly="both", seed=3)
    other = build_tasks(data, single_anomaly=value, seed=3)
    for a, b in zip(paper, other, strict=True):
        assert a.summary() == b.summary()
        assert a.support_seen.tolist() == b.support_seen.tolist()
        assert a.support_pseudo.tolist() == b.support_pseudo.tolist()


def test_an_unknown_value_is_a_clear_error():
    with pytest.raises(DataError, match="single_anomaly"):
        build_tasks(vector_data(n_seen=1), single_anomaly="nowhere", seed=0)  # type: ignore[arg-type]


def test_defaults_and_the_paper_preset():
    assert AHLOptions().single_anomaly == "query_normal_support" and AHLOptions().guard
    paper = AHLOptions(**PAPER_AHL_OPTIONS)
    assert paper.single_anomaly == "both" and paper.m1_outer_steps is None and not paper.guard
    assert paper.outer_schedule(1) == paper.outer_schedule(10) == (paper.n_outer_steps, paper.outer_lr)


def test_m1_outer_steps_keep_the_update_budget_and_only_act_at_m1():
    options = AHLOptions()
    steps, lr = options.outer_schedule(1)
    assert steps == 20 and abs(steps * lr - options.n_outer_steps * options.outer_lr) < 1e-12
    assert options.outer_schedule(2) == (options.n_outer_steps, options.outer_lr)


def test_training_at_m1_records_the_tasks_and_the_smaller_steps():
    from ahl_testkit import VectorScorer, deviation_loss, train_ahl

    data = vector_data(n_seen=1)
    fast = {"epochs": 2, "history": 2, "batch_size": 12, "outer_steps_per_epoch": 2, "batches_per_epoch": 2}
    torch.manual_seed(0)
    _, history = train_ahl(VectorScorer(data.normals.spec), deviation_loss, data, AHLOptions(**fast), seed=0)
    assert all(t["support"]["seen"] == 0 and t["support"]["pseudo"] == 0 for t in history["tasks"])
    assert all(t["query"]["seen"] == 1 and t["query"]["pseudo"] > 0 for t in history["tasks"])
    assert abs(history["epochs"][0]["lr"] - AHLOptions(**fast).outer_lr * 2 / 20) < 1e-12
