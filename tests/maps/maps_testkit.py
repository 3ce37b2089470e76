"""Synthetic images with a known defect square, and a tiny frozen extractor that keeps positions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ahl_plugins.features.module_extractor import ModuleExtractor

HEIGHT, WIDTH = 48, 72  # not square: maps must come back at the image's own size
SQUARE = 16
FAST = {"epochs": 4, "batches_per_epoch": 6, "n_pseudo": 16, "use_cache": False}


class LocalMeans(nn.Module):
    """Two scales of local mean colour: 4×4 and 8×8 average pooling (a frozen, position-keeping 'backbone')."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [nn.functional.avg_pool2d(x, 4), nn.functional.avg_pool2d(x, 8)]


def extractor() -> ModuleExtractor:
    return ModuleExtractor(LocalMeans(), image_size=64, mean=None, std=None, name="local-means")


def write_images(folder: Path, n: int, seed: int, defect: bool) -> tuple[list[Path], list[tuple[int, int]]]:
    """Gray noise images; with ``defect`` a bright square at a random place. Returns paths and top-left corners."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, corners = [], []
    for i in range(n):
        image = (rng.random((HEIGHT, WIDTH)) * 60 + 70).astype(np.uint8)
        corner = (-1, -1)
        if defect:
            corner = (int(rng.integers(0, HEIGHT - SQUARE)), int(rng.integers(0, WIDTH - SQUARE)))
            image[corner[0] : corner[0] + SQUARE, corner[1] : corner[1] + SQUARE] = 250
        path = folder / f"{i:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
        corners.append(corner)
    return paths, corners


def write_mask(path: Path, corner: tuple[int, int]) -> None:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[corner[0] : corner[0] + SQUARE, corner[1] : corner[1] + SQUARE] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)


def training_set(root: Path) -> tuple[list[Path], np.ndarray]:
    normals, _ = write_images(root / "train_normal", 30, seed=0, defect=False)
    anomalies, _ = write_images(root / "train_anomaly", 6, seed=1, defect=True)
    return normals + anomalies, np.r_[np.zeros(len(normals)), np.ones(len(anomalies))].astype(int)


def mvtec_folder(root: Path) -> Path:
    """An MVTec-layout folder with ground-truth masks for the defect squares."""
    write_images(root / "train" / "good", 30, seed=2, defect=False)
    write_images(root / "test" / "good", 6, seed=3, defect=False)
    for kind, seed in (("square", 4), ("spot", 5)):
        paths, corners = write_images(root / "test" / kind, 5, seed=seed, defect=True)
        for path, corner in zip(paths, corners, strict=True):
            write_mask(root / "ground_truth" / kind / f"{path.stem}_mask.png", corner)
    return root
