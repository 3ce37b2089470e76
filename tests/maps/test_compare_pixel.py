"""`ahl compare` on a folder with masks: pixel AUROC / AUPRO per cell, per type, base and AHL alike."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner
from maps_testkit import mvtec_folder

from ahl_plugins.cli import cli

SMALL_RESNET = ["--extractor", "resnet18", "--extractor-option", "weights=none", "--extractor-option", "image_size=64"]
TINY = [
    "-o",
    "epochs=2",
    "-o",
    "batches_per_epoch=2",
    "-o",
    "n_pseudo=8",
    "--ahl-option",
    "outer_steps_per_epoch=1",
    "--ahl-option",
    "inner_steps=1",
]


def test_compare_reports_pixel_metrics_when_masks_exist(tmp_path):
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
    assert rows[("knn", "knn")]["pixel_auroc"] == ""  # the k-NN reference has no maps
    for variant in ("base", "ahl"):
        row = rows[("devnet", variant)]
        assert 0.0 <= float(row["pixel_auroc"]) <= 1.0 and 0.0 <= float(row["pixel_aupro"]) <= 1.0
        by_type = json.loads(row["pixel_by_type"])
        assert set(by_type) >= {"all"} and set(by_type) - {"all"} <= {"spot", "square"}
        assert by_type["all"]["pixel_auroc"] == float(row["pixel_auroc"])
    summary = (out / "summary.md").read_text()
    assert "pixel AUROC, general setting" in summary and "AUPRO, general setting" in summary
    assert "pixel AUROC / AUPRO by anomaly type" in summary
    assert "pixel AUROC" in result.output


def test_no_pixel_tables_without_masks(tmp_path):
    """The same report for data without masks: image metrics only, no empty pixel tables."""
    from ahl_plugins.evaluation.report import format_table, summarise

    rows = [
        {
            "status": "ok",
            "model": m,
            "variant": v,
            "setting": "general",
            "n_anomalies": 10,
            "seen_type": "all",
            "seed": s,
            "auc_roc": 0.8 + 0.01 * s,
            "auc_pr": 0.7,
            "pixel_auroc": None,
            "pixel_aupro": None,
            "pixel_by_type": None,
            "fit_seconds": 1.0,
            "train_seconds": 1.0,
            "score_seconds": 0.1,
        }
        for m, v in (("devnet", "base"), ("devnet", "ahl"))
        for s in (0, 1)
    ]
    table = format_table(summarise(rows))
    assert "AUC-ROC" in table and "pixel" not in table and "AUPRO" not in table
