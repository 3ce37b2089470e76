from __future__ import annotations

import json

import numpy as np
import pytest
from data_testkit import make_mvtec_tree, vector_dataset

from ahl_plugins.data.arrays import from_arrays
from ahl_plugins.data.dataset import NORMAL_TYPE
from ahl_plugins.data.folder import load_folder
from ahl_plugins.data.protocols import Split, make_split
from ahl_plugins.errors import DataError, InvalidOptionsError


def _ids(ds, indices):
    return {ds.ids[i] for i in indices}


def _check_invariants(ds, split):
    train, test = split.train_indices, split.test_indices
    assert not set(train.tolist()) & set(test.tolist())
    assert len(set(train.tolist())) == train.size and len(set(test.tolist())) == test.size
    labelled = split.labelled_indices
    assert labelled.size == split.n_anomalies
    assert (ds.labels[labelled] == 1).all()
    # labelled and test anomalies never share an id
    assert not _ids(ds, labelled) & _ids(ds, test[ds.labels[test] == 1])
    # what training sees: 1 only for labelled anomalies
    assert np.array_equal(split.train_labels == 1, np.isin(train, labelled))
    assert np.array_equal(split.test_labels, ds.labels[test]) and np.array_equal(split.test_types, ds.types[test])
    assert (split.test_labels == 0).any() and (split.test_labels == 1).any()
    split.check(ds)


@pytest.mark.parametrize("n_anomalies", [1, 10])
def test_general_setting_invariants(n_anomalies):
    ds = vector_dataset()
    split = make_split(ds, "general", n_anomalies=n_anomalies, seed=3)
    _check_invariants(ds, split)
    # every anomaly not used for training is in the test set
    anomalies = set(np.flatnonzero(ds.labels == 1).tolist())
    assert anomalies == set(split.labelled_indices.tolist()) | set(split.test_indices[split.test_labels == 1].tolist())
    # normals split 75/25 (no source partition)
    n_normals = int((ds.labels == 0).sum())
    assert (split.test_labels == 0).sum() == round(0.25 * n_normals)
    assert (split.train_labels == 0).sum() == n_normals - round(0.25 * n_normals)
    assert split.seen_types == tuple(sorted(set(ds.types[split.labelled_indices])))
    assert list(split.labelled_types) == ds.types[split.labelled_indices].tolist()


def test_hard_setting_excludes_the_seen_type_from_test():
    ds = vector_dataset()
    split = make_split(ds, "hard", n_anomalies=10, anomaly_type="a", seed=0)
    _check_invariants(ds, split)
    assert split.seen_types == ("a",) and set(ds.types[split.labelled_indices]) == {"a"}
    assert "a" not in set(split.test_types.tolist())
    assert set(split.test_types[split.test_labels == 1].tolist()) == {"b", "c"} == set(split.unseen_types)
    # all anomalies of the other types are tested
    assert (split.test_types == "b").sum() == 8 and (split.test_types == "c").sum() == 5


def test_seeds_reproduce_and_differ():
    ds = vector_dataset()
    a = make_split(ds, "general", 5, seed=7)
    b = make_split(ds, "general", 5, seed=7)
    c = make_split(ds, "general", 5, seed=8)
    assert np.array_equal(a.train_indices, b.train_indices) and np.array_equal(a.test_indices, b.test_indices)
    assert a.to_dict() == b.to_dict()
    assert not np.array_equal(a.train_indices, c.train_indices)
    h1 = make_split(ds, "hard", 3, "b", seed=1)
    h2 = make_split(ds, "hard", 3, "b", seed=2)
    assert set(h1.labelled_indices.tolist()) != set(h2.labelled_indices.tolist())


def test_mvtec_partition_is_respected(tmp_path):
    ds = load_folder(make_mvtec_tree(tmp_path / "cat", n_train=6, n_test_good=3, anomalies={"scratch": 4, "dent": 3}))
    split = make_split(ds, "general", n_anomalies=2, seed=0)
    _check_invariants(ds, split)
    train_normals = split.train_indices[split.train_labels == 0]
    assert set(ds.partition[train_normals]) == {"train"} and train_normals.size == 6
    assert _ids(ds, split.test_indices[split.test_labels == 0]) == {i for i in ds.ids if i.startswith("test/good/")}
    assert (split.test_labels == 1).sum() == 7 - 2
    hard = make_split(ds, "hard", n_anomalies=1, anomaly_type="dent", seed=0)
    assert set(hard.test_types) == {NORMAL_TYPE, "scratch"} and hard.train_indices.size == 7


def test_contamination_recorded_and_trained_as_normal():
    ds = vector_dataset(n_normal=40, anomalies={"a": 20, "b": 15})
    split = make_split(ds, "general", n_anomalies=5, seed=0, contamination=0.1)
    _check_invariants(ds, split)
    cont = split.contaminated_indices
    n_train_normals = int(((split.train_labels == 0) & (ds.labels[split.train_indices] == 0)).sum())
    assert cont.size == round(0.1 * n_train_normals / 0.9) and cont.size > 0
    assert (ds.labels[cont] == 1).all()
    assert set(cont.tolist()) <= set(split.unlabelled_indices.tolist())
    assert not set(cont.tolist()) & set(split.test_indices.tolist())
    assert not set(cont.tolist()) & set(split.labelled_indices.tolist())
    assert split.summary()["train"]["contamination"] == cont.size
    hard = make_split(ds, "hard", n_anomalies=5, anomaly_type="a", seed=0, contamination=0.1)
    assert set(ds.types[hard.contaminated_indices]) == {"a"} and set(hard.unseen_types) == {"b"}


def test_round_trip_through_json():
    ds = vector_dataset()
    split = make_split(ds, "hard", 4, "a", seed=5, contamination=0.05)
    data = json.loads(json.dumps(split.to_dict()))
    assert len(data["train"]["ids"]) == split.train_indices.size and data["test"]["ids"][0].startswith("row:")
    back = Split.from_dict(data)
    assert back.to_dict() == split.to_dict()
    for name in ("train_indices", "train_labels", "test_indices", "test_labels", "test_types", "contaminated_indices"):
        assert np.array_equal(getattr(back, name), getattr(split, name))
    assert back.summary() == split.summary()
    with pytest.raises(DataError, match="not a saved split"):
        Split.from_dict({"setting": "general"})
    # a split applied to different data is caught by its ids
    other = ds.subset(np.arange(len(ds))[::-1])
    with pytest.raises(DataError, match="ids differ"):
        back.check(other)


def test_summary_counts():
    ds = vector_dataset()
    summary = make_split(ds, "hard", 3, "c", seed=0).summary()
    assert summary["train"] == {"normal": 30, "contamination": 0, "labelled_anomalies": {"c": 3}, "total": 33}
    assert summary["test"] == {"normal": 10, "anomalies": {"a": 12, "b": 8}, "total": 30}
    assert summary["unseen_types"] == ["a", "b"]


def test_impossible_splits_say_why():
    ds = vector_dataset()
    with pytest.raises(DataError, match=r"type 'zz' not in .*types are \['a', 'b', 'c'\]"):
        make_split(ds, "hard", 3, "zz")
    with pytest.raises(InvalidOptionsError, match=r"needs anomaly_type .*\['a', 'b', 'c'\]"):
        make_split(ds, "hard", 3)
    with pytest.raises(DataError, match=r"6 labelled anomalies requested but only 5 anomalies of type 'c'"):
        make_split(ds, "hard", 6, "c")
    with pytest.raises(DataError, match=r"no anomalies left for the test set"):
        make_split(ds, "general", 25)
    with pytest.raises(DataError, match=r"26 labelled anomalies requested but only 25"):
        make_split(ds, "general", 26)
    with pytest.raises(InvalidOptionsError, match=r"n_anomalies"):
        make_split(ds, "general", 0)
    with pytest.raises(InvalidOptionsError, match=r"setting"):
        make_split(ds, "easy", 1)
    with pytest.raises(DataError, match=r"has no anomalies"):
        make_split(vector_dataset(anomalies={}), "general", 1)
    with pytest.raises(DataError, match=r"only \['a'\]; use the general setting"):
        make_split(vector_dataset(anomalies={"a": 5}), "hard", 1, "a")
    with pytest.raises(DataError, match=r"contamination 0.5 needs"):
        make_split(ds, "hard", 3, "c", contamination=0.5)


def test_training_partition_anomalies_are_the_labelled_pool():
    # NSL-KDD-like: separate training and test files, anomalies in both
    n = 40
    partition = ["train"] * 20 + ["test"] * 20
    types = (["normal"] * 12 + ["dos"] * 6 + ["probe"] * 2) + (
        ["normal"] * 10 + ["dos"] * 4 + ["probe"] * 3 + ["r2l"] * 3
    )
    labels = [0 if t == "normal" else 1 for t in types]
    ds = from_arrays(np.random.default_rng(0).normal(size=(n, 3)), labels, types, partition=partition)
    split = make_split(ds, "hard", 4, "dos", seed=0)
    _check_invariants(ds, split)
    assert set(ds.partition[split.train_indices]) == {"train"} and set(ds.partition[split.test_indices]) == {"test"}
    assert split.summary()["test"] == {"normal": 10, "anomalies": {"probe": 3, "r2l": 3}, "total": 16}
    with pytest.raises(DataError, match=r"only 6 anomalies of type 'dos' in the training partition"):
        make_split(ds, "hard", 7, "dos")
    with pytest.raises(DataError, match=r"only 0 anomalies of type 'r2l' in the training partition"):
        make_split(ds, "hard", 1, "r2l")
    general = make_split(ds, "general", 8, seed=1)
    assert set(ds.partition[general.labelled_indices]) == {"train"}
    assert (general.test_labels == 1).sum() == 10
