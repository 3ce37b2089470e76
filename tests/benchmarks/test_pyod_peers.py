"""PyOD peers: XGBOD's detector list, and how raw rows become the family table's per-seed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.peers_page import compare_name, pyod_by_seed


def _row(seen: str, seed: int, auc: float, setting: str = "hard", status: str = "ok") -> dict:
    return {
        "data": "d",
        "setting": setting,
        "seen_type": seen,
        "seed": seed,
        "detector": "PyOD XGBOD",
        "auc_roc": auc,
        "status": status,
    }


def test_hard_rows_average_the_seen_types_per_seed_and_drop_incomplete_seeds():
    rows = [_row("a", 0, 0.8), _row("b", 0, 0.6), _row("a", 1, 0.9), _row("b", 1, 0.1, status="failed")]
    assert pyod_by_seed(rows, "d", "hard") == {"PyOD XGBOD": {0: pytest.approx(0.7)}}
    assert pyod_by_seed(rows, "d", "general") == {}


def test_adbench_peer_names_map_to_compare_parts():
    assert compare_name("adbench_mvtec_screw") == "adbench_screw"
    assert compare_name("pmlb_shuttle") == "pmlb_shuttle"


def test_xgbod_without_one_class_svms_keeps_the_other_default_detectors():
    pytest.importorskip("pyod")
    from benchmarks.pyod_peers import xgbod_detectors

    names = [type(d).__name__ for d in xgbod_detectors("no_ocsvm", n_train=100, seed=0)]
    assert "OCSVM" not in names
    assert names.count("KNN") == names.count("LOF") == 8 and names.count("HBOS") == names.count("IForest") == 7
    assert xgbod_detectors("default", 100, 0) is None
    assert [type(d).__name__ for d in xgbod_detectors("no_ocsvm", n_train=4, seed=0)].count("KNN") == 2  # k < n


def test_xgbod_separates_labelled_anomalies_on_a_toy_split():
    pytest.importorskip("xgboost")
    from types import SimpleNamespace

    from benchmarks.pyod_peers import run_detector

    rng = np.random.default_rng(0)
    x_train = np.r_[rng.normal(size=(80, 3)), rng.normal(4.0, 1.0, size=(10, 3))]
    y_train = np.r_[np.zeros(80, int), np.ones(10, int)]
    x_test = np.r_[rng.normal(size=(40, 3)), rng.normal(4.0, 1.0, size=(10, 3))]
    y_test = np.r_[np.zeros(40, int), np.ones(10, int)]
    split = SimpleNamespace(
        x_train=x_train, x_test=x_test, data=SimpleNamespace(train_labels=y_train, test_labels=y_test)
    )
    assert run_detector("XGBOD", split, 0, "no_ocsvm")["auc_roc"] > 0.9
