"""Small, fast data for detector tests."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def blobs():
    """Normals around 0, labelled anomalies shifted in the first 3 features, test set with both."""
    rng = np.random.default_rng(0)
    normal = rng.normal(size=(120, 8)).astype(np.float32)
    anomalies = rng.normal(size=(30, 8)).astype(np.float32)
    anomalies[:, :3] += 4.0
    X = np.concatenate([normal[:90], anomalies[:6]])
    y = np.r_[np.zeros(90), np.ones(6)].astype(int)
    X_test = np.concatenate([normal[90:], anomalies[6:]])
    y_test = np.r_[np.zeros(30), np.ones(24)].astype(int)
    return X, y, X_test, y_test


@pytest.fixture
def mvtec_tree(tmp_path):
    """A tiny MVTec-style folder: bright squares are the defects."""
    rng = np.random.default_rng(1)

    def write(folder, n, defect):
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image = (rng.random((40, 40)) * 60 + 60).astype(np.uint8)
            if defect:
                x, y = rng.integers(4, 28, size=2)
                image[y : y + 10, x : x + 10] = 250
            Image.fromarray(image).save(folder / f"{i:03d}.png")

    write(tmp_path / "train" / "good", 24, False)
    write(tmp_path / "test" / "good", 8, False)
    write(tmp_path / "test" / "scratch", 6, True)
    write(tmp_path / "test" / "dent", 6, True)
    return tmp_path
