"""HADG task invariants: real cluster members, one anomaly split per task, different generators, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ahl_testkit import map_data, vector_data

from ahl_plugins.ahl.hadg import (
    SmallClusterWarning,
    build_tasks,
    cluster_normals,
    pooled_features,
)
from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN
from ahl_plugins.errors import DataError
from ahl_plugins.features.store import Features
from ahl_plugins.training.data import TrainingData


def test_tasks_are_ordered_pairs_of_real_clusters():
    data = vector_data(n_normals=60)
    taskset = build_tasks(data, n_clusters=3, seed=0)
    clusters = taskset.clustering
    assert clusters.n_clusters == 3 and sorted(clusters.sizes) == [20, 20, 20]
    assert len(taskset) == 6
    pairs = {(t.support_cluster, t.query_cluster) for t in taskset}
    assert pairs == {(a, b) for a in range(3) for b in range(3) if a != b}
    for task in taskset:
        assert task.kind == "clusters"
        assert task.support_cluster != task.query_cluster
        # the clusters' real members (defect 1 took the first |cluster| files instead)
        np.testing.assert_array_equal(task.support_normals, np.flatnonzero(clusters.labels == task.support_cluster))
        np.testing.assert_array_equal(task.query_normals, np.flatnonzero(clusters.labels == task.query_cluster))
        assert not set(task.support_normals) & set(task.query_normals)


def test_clusters_follow_the_data_modes():
    data = vector_data(n_normals=60)
    labels = cluster_normals(data.normals, 3, 1, seed=0).labels
    true_mode = np.arange(60) % 3  # how vector_data laid out its blobs
    for mode in range(3):
        assert len(set(labels[true_mode == mode])) == 1


def test_map_features_are_pooled_per_scale_for_clustering():
    data = map_data(n_normals=36, channels=4)
    pooled = pooled_features(data.normals)
    assert pooled.shape == (36, 8)
    np.testing.assert_allclose(pooled[:, :4], data.normals.scales[0].mean(dim=(2, 3)).numpy(), rtol=1e-6)
    taskset = build_tasks(data, n_clusters=3, seed=0)
    assert len(taskset) == 6


def test_seen_anomalies_split_once_per_task():
    data = vector_data(n_seen=7)
    for task in build_tasks(data, seed=3):
        assert task.support_seen.size == 3 and task.query_seen.size == 4
        assert not set(task.support_seen) & set(task.query_seen)
        assert sorted([*task.support_seen, *task.query_seen]) == list(range(7))


def test_splits_differ_between_tasks():
    data = vector_data(n_seen=10)
    supports = {tuple(t.support_seen) for t in build_tasks(data, seed=0)}
    assert len(supports) > 1


def test_single_seen_anomaly_goes_to_both_sets():
    data = vector_data(n_seen=1)
    for task in build_tasks(data, seed=0):
        assert list(task.support_seen) == [0] and list(task.query_seen) == [0]


def test_no_seen_anomalies_gives_tasks_without_label_one():
    data = vector_data(n_seen=0)
    taskset = build_tasks(data, seed=0)
    for task in taskset:
        for part in ("support", "query"):
            _, labels = taskset.layout.rows(task, part)
            assert LABEL_SEEN not in set(labels.tolist())
            assert {LABEL_NORMAL, LABEL_PSEUDO} <= set(labels.tolist())


def test_support_and_query_generators_differ():
    data = vector_data(pools={"a": 10, "b": 12, "c": 14})
    taskset = build_tasks(data, seed=1)
    for task in taskset:
        assert task.support_generator != task.query_generator
        assert not task.pseudo_split
        assert task.support_pseudo.size == len(data.pseudo[task.support_generator])
        assert task.query_pseudo.size == len(data.pseudo[task.query_generator])


def test_one_generator_pool_is_split_disjointly():
    data = vector_data(pools={"only": 21})
    for task in build_tasks(data, seed=0):
        assert task.support_generator == task.query_generator == "only"
        assert task.pseudo_split
        assert not set(task.support_pseudo) & set(task.query_pseudo)
        assert sorted([*task.support_pseudo, *task.query_pseudo]) == list(range(21))
        assert task.summary()["pseudo_split"] is True


def test_no_pseudo_pools_gives_no_label_two():
    data = vector_data(pools={})
    taskset = build_tasks(data, seed=0)
    for task in taskset:
        assert task.support_generator is None and task.query_generator is None
        _, labels = taskset.layout.rows(task, "support")
        assert LABEL_PSEUDO not in set(labels.tolist())


def test_layout_rows_point_at_the_stacked_samples():
    data = vector_data(n_seen=4, pools={"a": 5, "b": 6})
    features, labels = data.stacked()
    taskset = build_tasks(data, seed=0)
    for task in taskset:
        rows, row_labels = taskset.layout.rows(task, "query")
        np.testing.assert_array_equal(labels[torch.from_numpy(rows)].numpy(), row_labels)
        pseudo_rows = rows[row_labels == LABEL_PSEUDO]
        expected = data.pseudo[task.query_generator].scales[0][torch.from_numpy(task.query_pseudo)]
        assert torch.equal(features.scales[0][torch.from_numpy(pseudo_rows)], expected)
        normal_rows = rows[row_labels == LABEL_NORMAL]
        np.testing.assert_array_equal(normal_rows, task.query_normals)


def test_seeds_reproduce_and_differ():
    data = vector_data(n_seen=8, pools={"a": 5, "b": 5, "c": 5})
    first, again, other = build_tasks(data, seed=7), build_tasks(data, seed=7), build_tasks(data, seed=8)
    for a, b in zip(first, again, strict=True):
        assert a.summary() == b.summary()
        for name in (
            "support_normals",
            "query_normals",
            "support_seen",
            "query_seen",
            "support_pseudo",
            "query_pseudo",
        ):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert [tuple(t.support_seen) for t in first] != [tuple(t.support_seen) for t in other]


def test_random_halves_task_is_added():
    data = vector_data(n_normals=61)
    taskset = build_tasks(data, random_halves_task=True, seed=0)
    assert len(taskset) == 7
    halves = taskset[6]
    assert halves.kind == "random_halves" and halves.support_cluster is None
    assert not set(halves.support_normals) & set(halves.query_normals)
    assert sorted([*halves.support_normals, *halves.query_normals]) == list(range(61))


def test_random_groups_keep_sizes_but_not_clusters():
    data = vector_data(n_normals=60)
    clustered = build_tasks(data, seed=0)
    random = build_tasks(data, random_groups=True, seed=0)
    assert len(random) == len(clustered)
    for r, c in zip(random, clustered, strict=True):
        assert r.kind == "random_groups"
        assert r.support_normals.size == c.support_normals.size
        assert r.query_normals.size == c.query_normals.size
        assert not set(r.support_normals) & set(r.query_normals)
    assert any(not np.array_equal(r.support_normals, c.support_normals) for r, c in zip(random, clustered, strict=True))


@pytest.mark.parametrize("mode", ["other_clusters", "all"])
def test_query_normals_can_widen_beyond_one_cluster(mode):
    data = vector_data(n_normals=60)
    paper = build_tasks(data, seed=0)
    wide = build_tasks(data, query_normals=mode, seed=0)
    labels = wide.clustering.labels
    assert len(wide) == len(paper) == 6
    for w, p in zip(wide, paper, strict=True):
        np.testing.assert_array_equal(w.support_normals, p.support_normals)
        np.testing.assert_array_equal(w.support_seen, p.support_seen)  # only the query normals change
        assert w.query_generator == p.query_generator and w.query_cluster is None
        expected = np.arange(60) if mode == "all" else np.flatnonzero(labels != w.support_cluster)
        np.testing.assert_array_equal(w.query_normals, expected)


def test_unknown_query_normals_mode_is_refused():
    with pytest.raises(DataError, match="query_normals"):
        build_tasks(vector_data(), query_normals="nearest", seed=0)


def _two_blobs_and_outliers() -> TrainingData:
    rng = np.random.default_rng(0)
    big = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    outliers = np.array([[50.0, 50.0], [50.5, 50.0]])
    normals = Features((torch.as_tensor(np.concatenate([big, outliers]), dtype=torch.float32),))
    return TrainingData(normals, normals[[0]], {})


def test_outlier_clusters_are_reclustered_with_a_warning():
    data = _two_blobs_and_outliers()
    with pytest.warns(SmallClusterWarning, match="clustered again"):
        taskset = build_tasks(data, n_clusters=3, min_cluster_size=5, seed=0)
    clustering = taskset.clustering
    assert clustering.n_clusters == 3 and min(clustering.sizes) >= 5 and len(taskset) == 6
    assert clustering.reclustered_outliers == 2
    # the two outliers joined a cluster (the nearest one), not a cluster of their own
    assert clustering.labels[40] == clustering.labels[41]
    assert np.sum(clustering.labels == clustering.labels[40]) > 2


def test_clusters_still_too_small_are_merged_with_a_warning():
    data = _two_blobs_and_outliers()
    with pytest.warns(SmallClusterWarning) as caught:
        taskset = build_tasks(data, n_clusters=3, min_cluster_size=12, seed=0)
    assert any("merged" in str(w.message) for w in caught)
    clustering = taskset.clustering
    assert clustering.n_clusters == 2 and min(clustering.sizes) >= 12
    assert len(taskset) == 2
    assert clustering.summary()["merged"][0]["into"] in (0, 1, 2)


def test_a_single_cluster_falls_back_to_random_halves():
    data = _two_blobs_and_outliers()
    with pytest.warns(SmallClusterWarning):
        taskset = build_tasks(data, n_clusters=2, min_cluster_size=30, seed=0)
    assert len(taskset) == 1 and taskset[0].kind == "random_halves"


def test_too_few_normals_is_a_clear_error():
    data = vector_data(n_normals=2)
    with pytest.raises(DataError, match="n_clusters"):
        build_tasks(data, n_clusters=3, seed=0)
