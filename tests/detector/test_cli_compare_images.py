"""`ahl compare` on an image folder: base and AHL on the same split and cached features."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

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


@pytest.mark.slow  # a few seconds of real processes; the full suite runs it
def test_compare_an_image_folder(mvtec_tree, tmp_path):
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    args = [
        "compare",
        "--data",
        str(mvtec_tree),
        "--models",
        "devnet,dra",
        "--setting",
        "hard",
        "--anomaly-type",
        "scratch",
        "--n-anomalies",
        "3",
        "--seeds",
        "1",
        "--cache-dir",
        str(cache),
        "--output",
        str(out),
        "--quiet",
        "--no-plots",
        *SMALL_RESNET,
        *TINY,
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["model"], r["variant"]) for r in rows] == [
        ("knn", "knn"),
        ("knn[mean]", "knn"),
        ("patchcore", "knn"),  # image data get every label-free reference
        ("devnet", "base"),
        ("devnet", "ahl"),
        ("dra", "base"),
        ("dra", "ahl"),
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


@pytest.mark.slow  # two compares of images: over 30 s on a loaded 2-core machine
def test_compare_images_with_jobs_2_matches_serial_and_extracts_each_image_once(mvtec_tree, tmp_path):
    from ahl_plugins.evaluation.compare import CompareConfig, DetectorRunner
    from ahl_plugins.features.cache import FeatureCache

    common = [
        "compare",
        "--data",
        str(mvtec_tree),
        "--models",
        "devnet",
        "--setting",
        "hard",
        "--anomaly-type",
        "scratch",
        "--n-anomalies",
        "3",
        "--seeds",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--no-plots",
        *SMALL_RESNET,
        *TINY,
    ]
    runs = {}
    for name, extra in {"serial": [], "jobs2": ["--jobs", "2"]}.items():
        cache = tmp_path / f"cache-{name}"
        result = CliRunner().invoke(
            cli, [*common, *extra, "--cache-dir", str(cache), "--output", str(tmp_path / name)], catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        rows = list(csv.DictReader((tmp_path / name / "results.csv").open()))
        assert all(r["status"] == "ok" for r in rows), [r["reason"] for r in rows]
        runs[name] = {r["cell_id"]: (r["auc_roc"], r["auc_pr"]) for r in rows}
        for r in rows:
            with np.load(tmp_path / name / "cells" / f"{r['cell_id']}.npz") as cell:
                runs[name][r["cell_id"] + "/scores"] = cell["scores"].tobytes()
    assert runs["jobs2"] == runs["serial"]

    # the driver's warm-up alone fills the cache with one entry per image of the data set
    warm_cache = tmp_path / "warm-only"
    values = {
        "data": str(mvtec_tree),
        "models": ["devnet"],
        "extractor": "resnet18",
        "cache_dir": str(warm_cache),
        "extractor_options": {"weights": "none", "image_size": 64},
    }
    from ahl_plugins.data.load import load_dataset

    dataset = load_dataset(str(mvtec_tree))
    assert DetectorRunner(CompareConfig(**values)).warm(list(dataset.inputs)) == {"resnet18": len(dataset)}
    assert len(FeatureCache(warm_cache)) == len(dataset)
