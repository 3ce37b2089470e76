"""`ahl compare --finetune-backbone`: base fine-tuned vs AHL on its features, k-NN on both feature sets."""

from __future__ import annotations

import csv
import json

import numpy as np
from click.testing import CliRunner

from ahl_plugins.cli import cli

TINY = [
    "--extractor",
    "resnet18",
    "--extractor-option",
    "weights=none",
    "--extractor-option",
    "image_size=32",
    "--extractor-option",
    "scales=1",
    "--extractor-layers",
    "layer3",
    "-o",
    "epochs=1",
    "-o",
    "batches_per_epoch=2",
    "-o",
    "batch_size=12",
    "-o",
    "n_pseudo=6",
    "--ahl-option",
    "n_clusters=2",
    "--ahl-option",
    "history=1",
    "--ahl-option",
    "batches_per_epoch=1",
]


def test_compare_finetuned_base_with_ahl_on_its_features(tile_tree, tmp_path):
    out = tmp_path / "out"
    args = [
        "compare",
        "--data",
        str(tile_tree),
        "--models",
        "devnet",
        "--n-anomalies",
        "3",
        "--seeds",
        "1",
        "--finetune-backbone",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output",
        str(out),
        "--quiet",
        "--no-plots",
        *TINY,
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["variant"]): r for r in csv.DictReader((out / "results.csv").open())}  # completion order
    assert sorted(rows) == sorted(
        [
            ("knn", "knn"),
            ("knn[mean]", "knn"),
            ("patchcore", "knn"),
            ("knn[fine-tuned devnet]", "knn"),
            ("devnet", "base"),
            ("devnet", "ahl"),
        ]
    )
    assert all(r["status"] == "ok" for r in rows.values()), [r["reason"] for r in rows.values()]
    base, ahl = (
        json.loads((out / "cells" / f"{rows[key]['cell_id']}.json").read_text())["fit_info"]
        for key in [("devnet", "base"), ("devnet", "ahl")]
    )
    # AHL ran on the very network the base model fine-tuned (read back from the cache, not trained again).
    assert ahl["finetune"] == {**base["finetune"], "cached": True}
    assert base["finetune"]["cached"] is False  # the base cell trains it; the k-NN row waits and reads it back
    knn_pretrained, knn_tuned = (
        np.load(out / "cells" / f"{rows[key]['cell_id']}.npz")["scores"]
        for key in [("knn", "knn"), ("knn[fine-tuned devnet]", "knn")]
    )
    assert not np.allclose(knn_pretrained, knn_tuned)  # the fine-tuned row reads other features
