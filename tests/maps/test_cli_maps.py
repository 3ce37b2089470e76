"""`ahl score --maps DIR` and the pixel metrics of `ahl score`, end to end on a folder with masks."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from browser import broken_images, chromium
from click.testing import CliRunner
from maps_testkit import HEIGHT, WIDTH, mvtec_folder

from ahl_plugins.cli import cli

SMALL_RESNET = ["--extractor-option", "weights=none", "--extractor-option", "image_size=64"]
FAST = ["-o", "epochs=2", "-o", "batches_per_epoch=3", "-o", "n_pseudo=8"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("maps")
    data = mvtec_folder(root / "data")
    runner = CliRunner()
    model = root / "model"
    result = runner.invoke(
        cli,
        [
            "fit",
            "--data",
            str(data),
            "--model",
            "devnet",
            "--n-anomalies",
            "4",
            "--cache-dir",
            str(root / "cache"),
            "--output",
            str(model),
            *SMALL_RESNET,
            *FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli,
        [
            "score",
            "--model",
            str(model),
            "--data",
            str(data),
            "--output",
            str(root / "s.csv"),
            "--maps",
            str(root / "maps"),
            "--smooth",
            "2",
            "--cache-dir",
            str(root / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    return root, result.output


def test_score_writes_maps_overlays_and_an_index_sorted_by_score(scored):
    from PIL import Image

    root, _ = scored
    rows = list(csv.DictReader((root / "s.csv").open()))
    maps_dir = root / "maps"
    pngs, npys = sorted(maps_dir.glob("*.png")), sorted(maps_dir.glob("*.npy"))
    assert len(pngs) == len(npys) == len(rows) == 16
    for npy in npys:
        assert np.load(npy).shape == (HEIGHT, WIDTH)
    with Image.open(pngs[0]) as image:
        assert image.size == (2 * WIDTH, HEIGHT)  # the image beside its heatmap
    index = (maps_dir / "index.html").read_text()
    shown = re.findall(r'<img src="([^"]+)"', index)
    assert sorted(shown) == [p.name for p in pngs]
    listed = [float(s) for s in re.findall(r"score ([-0-9.e+]+)", index)]
    assert listed == sorted(listed, reverse=True) and len(listed) == 16
    assert index.count("mask outlined") == 10  # every anomaly has a mask, no normal does


def test_mask_outline_is_drawn_where_the_mask_is(scored):
    from PIL import Image

    root, _ = scored
    anomaly = next(p for p in sorted((root / "maps").glob("*.png")) if "square" in p.name)
    panel = np.asarray(Image.open(anomaly))
    green = (panel[..., 0] == 0) & (panel[..., 1] == 255) & (panel[..., 2] == 0)
    assert green[:, :WIDTH].sum() > 0 and green[:, :WIDTH].sum() == green[:, WIDTH:].sum()


def test_score_reports_pixel_metrics_per_type(scored):
    _, output = scored
    assert "pixel AUROC" in output and "AUPRO" in output
    for kind in ("all", "spot", "square"):
        assert re.search(rf"^{kind}\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+$", output, re.M), output


def test_every_overlay_loads_in_headless_chromium(scored):
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser check needs a real browser")
    root, _ = scored
    count, broken = broken_images(root / "maps" / "index.html", browser)
    assert count == 16
    assert broken == []


def test_maps_of_vector_data_fail_with_a_clear_message(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "table.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "label"])
        for i in range(80):
            writer.writerow([rng.normal() + (4 if i >= 70 else 0), rng.normal(), int(i >= 70)])
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "fit",
            "--data",
            str(path),
            "--data-option",
            "label_column=label",
            "--model",
            "devnet",
            "--n-anomalies",
            "5",
            "--output",
            str(tmp_path / "m"),
            *FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli,
        [
            "score",
            "--model",
            str(tmp_path / "m"),
            "--data",
            str(path),
            "--data-option",
            "label_column=label",
            "--output",
            str(tmp_path / "s.csv"),
            "--maps",
            str(tmp_path / "maps"),
        ],
    )
    assert result.exit_code != 0
    assert "anomaly maps need image inputs and feature maps" in result.output
    assert (tmp_path / "s.csv").is_file()  # the scores are written before the maps are refused


def test_the_browser_check_sees_a_missing_overlay(scored, tmp_path):
    """The harness itself: a page whose image file is gone is reported, so the check above can fail."""
    import shutil

    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser check needs a real browser")
    root, _ = scored
    copy = tmp_path / "maps"
    shutil.copytree(root / "maps", copy)
    gone = sorted(copy.glob("*.png"))[3]
    gone.unlink()
    count, broken = broken_images(copy / "index.html", browser)
    assert count == 16
    assert broken == [gone.name]
