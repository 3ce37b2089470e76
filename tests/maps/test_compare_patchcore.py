"""`ahl compare` adds the label-free reference rows: pooled k-NN (k-th and mean) and PatchCore with pixel metrics."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from maps_testkit import mvtec_folder

from ahl_plugins.cli import cli
from ahl_plugins.errors import InvalidOptionsError
from ahl_plugins.evaluation.compare.config import parse_config
from ahl_plugins.evaluation.compare.runner import knn_rows

SMALL_RESNET = ["--extractor", "resnet18", "--extractor-option", "weights=none", "--extractor-option", "image_size=64"]
TINY = [
    "-o",
    "epochs=1",
    "-o",
    "batches_per_epoch=1",
    "-o",
    "n_pseudo=8",
    "--ahl-option",
    "outer_steps_per_epoch=1",
    "--ahl-option",
    "inner_steps=1",
]


def test_reference_rows_with_patchcore_pixel_metrics(tmp_path):
    data = mvtec_folder(tmp_path / "data")
    out = tmp_path / "out"
    args = [
        "compare",
        "--data",
        str(data),
        "--models",
        "devnet",
        "--n-anomalies",
        "4",
        "--seeds",
        "1",
        "--references",
        "kth,mean,patchcore",
        "--coreset-fraction",
        "0.5",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output",
        str(out),
        "--quiet",
        "--no-plots",
        *SMALL_RESNET,
        *TINY,
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["variant"]): r for r in csv.DictReader((out / "results.csv").open())}
    assert {("knn", "knn"), ("knn[mean]", "knn"), ("patchcore", "knn")} <= set(rows)
    assert rows[("knn", "knn")]["pixel_auroc"] == ""
    patch = rows[("patchcore", "knn")]
    assert patch["status"] == "ok" and float(patch["pixel_auroc"]) > 0.5
    assert set(json.loads(patch["pixel_by_type"])) >= {"all"}


def test_default_references_and_labels():
    config = parse_config(data="digits")
    assert config.reference_forms("image") == ["kth", "mean", "patchcore"]
    assert config.reference_forms("vector") == ["kth"]
    assert parse_config(data="digits", references=["mean", "patchcore"]).reference_forms("vector") == ["mean"]
    assert "references" not in config.identity() and "coreset_fraction" not in config.identity()
    with pytest.raises(InvalidOptionsError, match="unknown reference"):
        parse_config(data="digits", references=["patch"])
    rows = knn_rows(["devnet", "dra"], "resnet18", "image", ["kth", "mean", "patchcore"])
    assert [r[0] for r in rows] == ["knn", "knn[mean]", "patchcore"]


@pytest.mark.slow
def test_labelled_patchcore_rows_use_map_statistics(tmp_path):
    """The SegAD-class rows: map statistics of the PatchCore-class maps, classified with the labels (opt-in);
    the training normals are scored with their own patches left out of the memory."""
    data = mvtec_folder(tmp_path / "data")
    out = tmp_path / "out"
    args = [
        "compare",
        "--data",
        str(data),
        "--models",
        "devnet",
        "--n-anomalies",
        "4",
        "--seeds",
        "1",
        "--references",
        "patchcore,patchcore_stats,patchcore_floor_stats",
        "--coreset-fraction",
        "0.5",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output",
        str(out),
        "--quiet",
        "--no-plots",
        *SMALL_RESNET,
        *TINY,
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["variant"]): r for r in csv.DictReader((out / "results.csv").open())}
    for label in ("patchcore_stats", "patchcore_floor_stats"):
        row = rows[(label, "knn")]
        assert row["status"] == "ok" and 0 <= float(row["auc_roc"]) <= 1, row
        assert row["pixel_auroc"] == ""  # the maps are PatchCore's: no pixel metrics of their own
    assert parse_config(data="digits", references=["patchcore_stats"]).reference_forms("vector") == []
