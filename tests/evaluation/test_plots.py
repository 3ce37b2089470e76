from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ahl_plugins.evaluation.compare import CompareConfig, run_compare
from ahl_plugins.evaluation.plots import weight_trajectory, write_plots

sys.path.insert(0, str(Path(__file__).parent))
from fakes import FakeRunner, synthetic_dataset

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_written_and_non_empty(tmp_path):
    config = CompareConfig(
        data="synthetic", models=["devnet"], settings=["general", "hard"], n_anomalies=[3], seeds=2, progress=False
    )
    result = run_compare(config, tmp_path, runner=FakeRunner(), dataset=synthetic_dataset())
    names = sorted(p.name for p in result.plots)
    assert names == [
        "forest_auc_pr.png",
        "forest_auc_roc.png",
        "gain_hard_M3.png",
        "roc_devnet_general_M3.png",
        "roc_devnet_hard_M3.png",
        "sge_weights_devnet.png",
    ]
    for path in result.plots:
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG), path
    # redrawing from the directory alone gives the same set
    again = write_plots(tmp_path, result.rows)
    assert sorted(p.name for p in again) == names


def test_weight_trajectory_reads_the_ahl_history_format():
    history = {
        "epochs": [{"epoch": 1, "weights": [0.5, 0.5]}, {"epoch": 2, "weights": [0.7, 0.3]}],
        "tasks": [{"kind": "clusters", "support_cluster": 0, "query_cluster": 1}, {"kind": "random_halves"}],
    }
    weights, labels = weight_trajectory(history)
    np.testing.assert_allclose(weights, [[0.5, 0.5], [0.7, 0.3]])
    assert labels == ["task 0: cluster 0 → 1", "task 1 (random_halves)"]
    assert weight_trajectory({"epochs": [{"epoch": 1, "loss": 0.3}]}) is None  # base-loop history
    assert weight_trajectory([]) is None


def test_roc_plot_skips_cells_whose_scores_are_gone(tmp_path):
    config = CompareConfig(
        data="synthetic", models=["devnet"], settings=["general"], n_anomalies=[3], seeds=1, progress=False
    )
    result = run_compare(config, tmp_path, runner=FakeRunner(), dataset=synthetic_dataset(), plots=False)
    for f in (tmp_path / "cells").glob("*.npz"):
        f.unlink()
    written = write_plots(tmp_path, result.rows)
    assert all(p.stat().st_size > 0 for p in written)
