"""`ahl fit` and `ahl score` end to end on a synthetic MVTec-style folder and a CSV."""

from __future__ import annotations

import csv
import json

import numpy as np
from click.testing import CliRunner

from ahl_plugins.cli import cli

SMALL_RESNET = ["--extractor-option", "weights=none", "--extractor-option", "image_size=64"]
FAST = ["-o", "epochs=2", "-o", "batches_per_epoch=3", "-o", "n_pseudo=8"]


def test_fit_then_score_a_folder(mvtec_tree, tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "model"
    args = [
        "fit",
        "--data",
        str(mvtec_tree),
        "--model",
        "dra",
        "--setting",
        "hard",
        "--anomaly-type",
        "scratch",
        "--n-anomalies",
        "3",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output",
        str(model_dir),
    ]
    result = runner.invoke(cli, args + SMALL_RESNET + FAST)
    assert result.exit_code == 0, result.output
    assert "on 24 normals and 3 labelled anomalies (scratch: 3)" in result.output
    split = json.loads((model_dir / "split.json").read_text())
    assert split["setting"] == "hard" and split["seen_types"] == ["scratch"]

    scores_csv = tmp_path / "scores.csv"
    result = runner.invoke(
        cli, ["score", "--model", str(model_dir), "--data", str(mvtec_tree), "--output", str(scores_csv)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(scores_csv.open()))
    assert len(rows) == 8 + 6 + 6  # every image under test/
    assert {r["type"] for r in rows} == {"normal", "scratch", "dent"}
    assert all(r["id"].startswith("test/") for r in rows)
    assert all(np.isfinite(float(r["score"])) for r in rows)
    assert "AUC-ROC" in result.output


def test_fit_with_ahl_then_score_a_csv(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "table.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "proto", "label"])
        for i in range(160):
            kind = "normal" if i < 130 else ("spike" if i < 145 else "drift")
            shift = {"normal": 0.0, "spike": 4.0, "drift": -4.0}[kind]
            writer.writerow([rng.normal() + shift, rng.normal(), rng.choice(["tcp", "udp"]), kind])
    runner = CliRunner()
    model_dir = tmp_path / "model"
    result = runner.invoke(
        cli,
        [
            "fit",
            "--data",
            str(path),
            "--data-option",
            "label_column=label",
            "--data-option",
            "type_column=label",
            "--data-option",
            'normal_labels=["normal"]',
            "--data-option",
            'categorical=["proto"]',
            "--model",
            "devnet",
            "--ahl",
            "--setting",
            "hard",
            "--anomaly-type",
            "spike",
            "--n-anomalies",
            "5",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output",
            str(model_dir),
            *FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((model_dir / "encoder.json").read_text())["categorical"] == ["proto"]
    assert json.loads((model_dir / "config.json").read_text())["config"]["ahl"] is True
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        cli,
        [
            "score",
            "--model",
            str(model_dir),
            "--data",
            str(path),
            "--data-option",
            "label_column=label",
            "--data-option",
            "type_column=label",
            "--data-option",
            'normal_labels=["normal"]',
            "--data-option",
            'categorical=["proto"]',
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(out.open()))) == 160


def test_show_options_lists_model_and_trainer_options():
    result = CliRunner().invoke(cli, ["fit", "--data", "x", "--model", "dra", "--show-options"])
    assert result.exit_code == 0, result.output
    assert "trainer (base loop):" in result.output and "epochs = " in result.output
    assert "loss 'dra':" in result.output
    ahl = CliRunner().invoke(cli, ["fit", "--data", "x", "--model", "dra", "--ahl", "--show-options"])
    assert "trainer (AHL):" in ahl.output and "inner_steps" in ahl.output


def test_unknown_option_is_a_readable_error(mvtec_tree, tmp_path):
    result = CliRunner().invoke(
        cli, ["fit", "--data", str(mvtec_tree), "--output", str(tmp_path / "m"), "-o", "epoch=3"]
    )
    assert result.exit_code != 0
    assert "Error: unknown option 'epoch'" in result.output
