"""``ahl compare`` end to end with the real detectors on a tiny .npz (few epochs, few batches)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from ahl_plugins.cli import cli

TINY = [
    "--option",
    "epochs=2",
    "--option",
    "batches_per_epoch=2",
    "--option",
    "n_pseudo=16",
    "--ahl-option",
    "outer_steps_per_epoch=1",
    "--ahl-option",
    "inner_steps=1",
]


@pytest.fixture
def tiny_npz(tmp_path):
    rng = np.random.default_rng(3)
    n_normal, n_type = 90, 8
    X = np.concatenate(
        [
            rng.normal(size=(n_normal, 5)),
            rng.normal(size=(n_type, 5)) + [3, 0, 0, 0, 0],
            rng.normal(size=(n_type, 5)) + [0, 3, 0, 0, 0],
        ]
    ).astype(np.float32)
    y = np.r_[np.zeros(n_normal), np.ones(2 * n_type)].astype(np.int64)
    types = np.r_[["normal"] * n_normal, ["up"] * n_type, ["side"] * n_type]
    path = tmp_path / "tiny.npz"
    np.savez(path, X=X, y=y, types=types)
    return path


def test_cli_compare_runs_base_and_ahl_and_resumes(tiny_npz, tmp_path, monkeypatch):
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    args = [
        "compare",
        "--data",
        str(tiny_npz),
        "--models",
        "devnet,dra",
        "--setting",
        "hard",
        "--n-anomalies",
        "3",
        "--seeds",
        "1",
        "--cache-dir",
        str(cache),
        "--output",
        str(out),
        "--quiet",
        *TINY,
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    # splits: hard(side) + hard(up), 1 seed; cells: knn + 2 models x (base, ahl)
    assert len(rows) == 10 and all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
    assert {(r["model"], r["variant"]) for r in rows} == {
        ("knn", "knn"),
        ("devnet", "base"),
        ("devnet", "ahl"),
        ("dra", "base"),
        ("dra", "ahl"),
    }
    for r in rows:
        assert 0.0 <= float(r["auc_roc"]) <= 1.0 and 0.0 <= float(r["auc_pr"]) <= 1.0
    # identical splits: every cell of a split saw the same test samples
    by_split: dict[str, set] = {}
    for r in rows:
        with np.load(out / "cells" / f"{r['cell_id']}.npz") as cell:
            key = r["cell_id"].split("__")[-1]
            by_split.setdefault(key, set()).add(cell["test_indices"].tobytes())
    assert all(len(v) == 1 for v in by_split.values())
    # the AHL cells kept their task-weight history
    ahl = json.loads((out / "cells" / "devnet__ahl__hard-M3-up-s0.json").read_text())
    assert (
        len(ahl["history"]["epochs"]) == 2 and len(ahl["history"]["epochs"][0]["weights"]) == ahl["history"]["n_tasks"]
    )
    summary = json.loads((out / "summary.json").read_text())
    hard_mean = [g for g in summary["gains"] if g["setting"] == "hard" and g["seen_type"] == "mean"]
    assert {g["model"] for g in hard_mean} == {"devnet", "dra"}
    assert "AHL(devnet)" in result.output and "plots" in result.output
    assert (out / "plots" / "sge_weights_dra.png").stat().st_size > 0

    # the same command again: nothing is fitted
    from ahl_plugins import detector

    def no_fit(*_a, **_k):
        raise AssertionError("a finished cell was fitted again")

    monkeypatch.setattr(detector.OSADDetector, "fit", no_fit)
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == 0 and "10 reused" in again.output


def test_cli_reports_bad_arguments(tiny_npz, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "compare",
            "--data",
            str(tiny_npz),
            "--setting",
            "hard",
            "--anomaly-type",
            "sideways",
            "--output",
            str(tmp_path / "o"),
            "--quiet",
        ],
    )
    assert result.exit_code != 0 and "sideways" in result.output and "['side', 'up']" in result.output
    result = runner.invoke(
        cli,
        [
            "compare",
            "--data",
            str(tiny_npz),
            "--models",
            "devnet",
            "--option",
            "epochz=2",
            "--output",
            str(tmp_path / "p"),
            "--quiet",
            "--seeds",
            "1",
            "--n-anomalies",
            "2",
        ],
    )
    assert result.exit_code != 0 and "epochz" in result.output


def test_a_compare_cell_records_drift_of_its_test_normals_and_the_driver_warns(recwarn):
    """A cell runs in a worker (where a warning would be lost): it keeps its drift causes in its info."""
    from ahl_plugins.drift import DriftReport
    from ahl_plugins.errors import DataDriftWarning
    from ahl_plugins.evaluation.compare.config import CompareConfig
    from ahl_plugins.evaluation.compare.runner import DetectorRunner
    from ahl_plugins.evaluation.compare.splits import SplitData
    from ahl_plugins.evaluation.grid import BASE, Cell, SplitKey

    rng = np.random.default_rng(0)
    normals, anomalies = rng.normal(size=(100, 5)), rng.normal(size=(20, 5)) + [4, 0, 0, 0, 0]
    key = SplitKey("general", 6, "all", 0)
    runner = DetectorRunner(CompareConfig(data="unused", models=["devnet"], epochs=2, options={"n_pseudo": 16}))

    def cell_info(test_normals):
        test = np.concatenate([test_normals, anomalies[6:]]).astype(np.float32)
        data = SplitData(
            key=key,
            split=None,
            dataset_name="blobs",
            train_inputs=np.concatenate([normals[:70], anomalies[:6]]).astype(np.float32),
            train_labels=np.r_[np.zeros(70), np.ones(6)].astype(np.int64),
            train_types=np.array(["normal"] * 70 + ["up"] * 6),
            test_inputs=test,
            test_labels=np.r_[np.zeros(len(test_normals)), np.ones(14)].astype(np.int64),
            test_types=np.array(["normal"] * len(test_normals) + ["up"] * 14),
        )
        return runner(Cell(key, "devnet", BASE), data).info

    assert "data_drift" not in cell_info(normals[70:])  # held-out normals, with more anomalies than normals
    drift = cell_info(normals[70:] + [0, 0, 6, 6, 6])["data_drift"]  # the camera moved: every normal scores high
    assert len(drift) == 1 and drift[0].startswith("score: the batch's median score")
    DriftReport(drift).warn("cell general-M6-all-s0/devnet/base: the test normals")
    assert [w.category for w in recwarn] == [DataDriftWarning]
