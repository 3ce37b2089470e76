"""Tiny synthetic images and a small random-weight ResNet-18 for the fine-tuning tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

#: A 32 px ResNet-18 read at layer3 on one scale: a 2×2 map, a few ms per batch.
TINY_RESNET = {"weights": "none", "image_size": 32, "scales": 1, "layers": ["layer3"]}
#: Two fine-tuning (or training) steps of 12 images each.
FAST = {"epochs": 2, "batches_per_epoch": 2, "batch_size": 12}
AHL_FAST = {"epochs": 1, "batches_per_epoch": 1, "batch_size": 12, "n_clusters": 2, "history": 1}


def write_tiles(folder: Path, count: int, defect: bool, seed: int) -> list[Path]:
    """Gray noise tiles; defects are bright squares."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        image = (rng.random((40, 40)) * 60 + 60).astype(np.uint8)
        if defect:
            x, y = rng.integers(4, 28, size=2)
            image[y : y + 10, x : x + 10] = 250
        path = folder / f"{i:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def tiles(tmp_path):
    """``(paths, labels)``: 20 normal tiles and 4 labelled defects."""
    normal = write_tiles(tmp_path / "tiles" / "good", 20, False, 0)
    defects = write_tiles(tmp_path / "tiles" / "defect", 4, True, 1)
    return normal + defects, np.r_[np.zeros(20), np.ones(4)].astype(int)


@pytest.fixture
def tile_tree(tmp_path):
    """An MVTec-style folder for the CLI: train/good, test/good and one defect type."""
    write_tiles(tmp_path / "tree" / "train" / "good", 20, False, 2)
    write_tiles(tmp_path / "tree" / "test" / "good", 6, False, 3)
    write_tiles(tmp_path / "tree" / "test" / "spot", 8, True, 4)
    return tmp_path / "tree"
