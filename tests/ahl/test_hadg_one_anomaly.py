"""M = 1 (the AHL paper's second protocol): the one labelled anomaly reaches every task's support and query batches.

The paper puts a single labelled anomaly in both sets of every task; if HADG left it out of either, the inner
step (support) or the meta-objective (query) would never see a real anomaly at M = 1.
"""

from __future__ import annotations

import torch
from ahl_testkit import vector_data

from ahl_plugins.ahl.cdl import TaskSampler
from ahl_plugins.ahl.hadg import build_tasks
from ahl_plugins.contracts import LABEL_SEEN


def test_one_anomaly_is_the_same_row_in_support_and_query_of_every_task():
    data = vector_data(n_seen=1)
    taskset = build_tasks(data, seed=0)
    seen_row = len(data.normals)  # the one seen anomaly's row in TrainingData.stacked()
    for task in taskset:
        for part in ("support", "query"):
            rows, labels = taskset.layout.rows(task, part)
            assert rows[labels == LABEL_SEEN].tolist() == [seen_row]


def test_every_drawn_batch_of_every_task_holds_the_one_anomaly():
    data = vector_data(n_seen=1)
    taskset = build_tasks(data, seed=0)
    sampler = TaskSampler(taskset, batch_size=9, generator=torch.Generator().manual_seed(0))
    seen_row = len(data.normals)
    for _ in range(5):
        batch = sampler.draw()
        for rows, labels in ((batch.support_rows, batch.support_labels), (batch.query_rows, batch.query_labels)):
            seen = labels == LABEL_SEEN
            # a third of each balanced batch (normal, seen, pseudo), every one of them the same anomaly
            assert seen.sum(dim=1).tolist() == [3] * len(taskset)
            assert set(rows[seen].tolist()) == {seen_row}


def test_two_anomalies_are_not_duplicated():
    data = vector_data(n_seen=2)
    for task in build_tasks(data, seed=0):
        assert task.support_seen.size == 1 and task.query_seen.size == 1
        assert set(task.support_seen.tolist()).isdisjoint(task.query_seen.tolist())
