"""`ahl compare` on an image folder: base and AHL on the same split and cached features."""

from __future__ import annotations

import csv

import numpy as np
from click.testing import CliRunner

from ahl_plugins.cli import cli

SMALL_RESNET = ["--extractor", "resnet18", "--extractor-option", "weights=none", "--extractor-option", "image_size=64"]
TINY = [
    "-o", "epochs=2", "-o", "batches_per_epoch=2", "-o", "n_pseudo=8",
    "--ahl-option", "outer_steps_per_epoch=1", "--ahl-option", "inner_steps=1",
]


def test_compare_an_image_folder(mvtec_tree, tmp_path):
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    args = [
        "compare", "--data", str(mvtec_tree), "--models", "devnet,dra", "--setting", "hard",
        "--anomaly-type", "scratch", "--n-anomalies", "3", "--seeds", "1", "--cache-dir", str(cache),
        "--output", str(out), "--quiet", "--no-plots", *SMALL_RESNET, *TINY,
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["model"], r["variant"]) for r in rows] == [
        ("knn", "knn"), ("devnet", "base"), ("devnet", "ahl"), ("dra", "base"), ("dra", "ahl")
    ]
    assert all(r["status"] == "ok" and r["extractor"] == "resnet18" for r in rows), [r["reason"] for r in rows]
    assert {r["unseen_types"] for r in rows} == {"dent"}
    tested = set()
    for r in rows:
        with np.load(out / "cells" / f"{r['cell_id']}.npz") as cell:
            tested.add(cell["test_indices"].tobytes())
            assert np.isfinite(cell["scores"]).all()
    assert len(tested) == 1  # every variant scored the same test images
    assert any(cache.rglob("*.safetensors"))  # features were extracted once, into the cache
