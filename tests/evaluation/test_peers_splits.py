"""benchmarks.peers hands DeepOD the very splits and features our models get (no DeepOD needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ahl_plugins.data.arrays import from_arrays
from ahl_plugins.data.protocols import make_split
from benchmarks import peers
from benchmarks.compare_catalogue import compare_parts
from benchmarks.harness import append_row


@pytest.fixture(scope="module")
def dataset():
    rng = np.random.default_rng(3)
    n_normal, n_a, n_b = 120, 15, 14
    X = np.concatenate([rng.normal(size=(n_normal, 4)), rng.normal(3, 1, (n_a, 4)), rng.normal(-3, 2, (n_b, 4))])
    X = X * np.array([1.0, 50.0, 0.01, 5.0]) + np.array([0.0, 10.0, -3.0, 1.0])  # unequal scales: z-scoring matters
    y = np.r_[np.zeros(n_normal), np.ones(n_a + n_b)].astype(int)
    types = np.r_[["normal"] * n_normal, ["a"] * n_a, ["b"] * n_b]
    return from_arrays(X.astype(np.float32), y, types, name="synthetic")


def test_peer_split_is_make_split_with_training_row_standardisation(dataset):
    entry = peers.PeerData("synthetic", "synthetic", "-", ("general", "hard"))
    keys = peers.split_keys(dataset, entry, [0, 1])
    assert [(k.setting, k.seen_type) for k in keys[::2]] == [("general", "all"), ("hard", "a"), ("hard", "b")]
    for key in keys:
        split = peers.peer_split(dataset, key)
        expected = make_split(
            dataset,
            setting=key.setting,
            n_anomalies=10,
            seed=key.seed,
            anomaly_type=None if key.setting == "general" else key.seen_type,
        )
        np.testing.assert_array_equal(split.data.split.train_indices, expected.train_indices)
        np.testing.assert_array_equal(split.data.split.test_indices, expected.test_indices)
        np.testing.assert_array_equal(split.data.train_labels, expected.train_labels)
        np.testing.assert_array_equal(split.data.test_labels, expected.test_labels)
        train = dataset.inputs[expected.train_indices].astype(np.float64)
        mean, std = train.mean(axis=0), train.std(axis=0)
        np.testing.assert_allclose(split.x_train, (train - mean) / std, atol=1e-4)
        test = dataset.inputs[expected.test_indices].astype(np.float64)
        np.testing.assert_allclose(split.x_test, (test - mean) / std, atol=1e-4)  # test rows use training statistics


def test_catalogue_is_the_compare_vector_parts_plus_embeddings_with_shuttle_last(tmp_path):
    embeddings = tmp_path / "embeddings" / "adbench_mvtec"
    embeddings.mkdir(parents=True)
    np.savez(embeddings / "bottle.npz", X=np.zeros((2, 2)), y=np.array([0, 1]))
    families = peers.catalogue(tmp_path)
    ours = compare_parts(tmp_path)
    for family in ("nsl_kdd", "pmlb"):
        m10 = [p for p in ours[family] if not p.name.endswith("_m1")]  # peers run at M = 10 only
        assert [d.name for d in families[family]] == [p.name for p in m10]
        assert [d.source for d in families[family]] == [p.data for p in m10]
    assert [(d.name, d.settings) for d in families["adbench"]] == [("adbench_mvtec_bottle", ("general",))]
    order = [d.name for d in peers.ordered(d for f in families.values() for d in f)]
    assert order[-1] == "pmlb_shuttle" and order[0] == "nsl_kdd"


def _row(data="d", setting="hard", seen="a", detector="DevNet", seed=0, roc=0.5):
    return {
        "data": data,
        "setting": setting,
        "seen_type": seen,
        "detector": detector,
        "seed": seed,
        "status": "ok",
        "auc_roc": roc,
        "auc_pr": roc,
        "fit_seconds": 1.0,
        "score_seconds": 0.1,
        "epochs": None,
    }


def test_results_resume_past_a_cut_line_and_summary_averages_complete_seeds(tmp_path):
    path = tmp_path / "results.jsonl"
    append_row(path, _row(seen="a", seed=0, roc=0.6))
    append_row(path, _row(seen="b", seed=0, roc=0.8))
    append_row(path, _row(seen="a", seed=1, roc=0.7))
    with open(path, "a") as handle:
        handle.write(json.dumps(_row(seen="b", seed=1))[:25])  # killed mid-line: that row is not finished
    assert len(peers.load_rows(path)) == 3
    append_row(path, _row(seen="a", seed=1, roc=0.9))  # a rerun of a row: the last one wins
    assert len(peers.load_rows(path)) == 3
    summary = peers.load_peer_summary(path)
    mean = next(g for g in summary["groups"] if g["seen_type"] == "mean")
    assert mean["types"] == ["a", "b"] and not mean["complete"]
    assert mean["auc_roc"]["by_seed"] == {0: pytest.approx(0.7)}  # seed 1 lacks type b: left out
    a = next(g for g in summary["groups"] if g["seen_type"] == "a")
    assert a["auc_roc"]["n"] == 2 and a["auc_roc"]["mean"] == pytest.approx(0.75)
