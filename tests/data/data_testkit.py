"""Builders of tiny synthetic data for the data tests (MVTec-style trees, tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def write_image(path: Path, mode: str = "RGB", size: int = 12, seed: int = 0, fmt: str | None = None) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size, size + 3, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def make_mvtec_tree(
    root: Path,
    *,
    n_train: int = 6,
    n_test_good: int = 3,
    anomalies: dict[str, int] | None = None,
    masks: bool = True,
) -> Path:
    """``root`` in MVTec-AD layout with images in several formats and modes."""
    anomalies = {"scratch": 4, "dent": 3} if anomalies is None else anomalies
    formats = [("png", "RGB"), ("png", "L"), ("png", "RGBA"), ("jpg", "RGB"), ("bmp", "RGB"), ("jpeg", "L")]
    seed = 0
    for i in range(n_train):
        ext, mode = formats[i % len(formats)]
        write_image(root / "train" / "good" / f"{i:03d}.{ext}", mode, seed=seed)
        seed += 1
    for i in range(n_test_good):
        ext, mode = formats[(i + 1) % len(formats)]
        write_image(root / "test" / "good" / f"{i:03d}.{ext}", mode, seed=seed)
        seed += 1
    for kind, count in anomalies.items():
        for i in range(count):
            ext, mode = formats[(i + 2) % len(formats)]
            write_image(root / "test" / kind / f"{i:03d}.{ext}", mode, seed=seed)
            seed += 1
            if masks:
                write_image(root / "ground_truth" / kind / f"{i:03d}_mask.png", "L", seed=seed)
    return root


def write_corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4)
    return path


def vector_dataset(n_normal: int = 40, anomalies: dict[str, int] | None = None, d: int = 4, partition=None):
    """Vectors with typed anomalies (types ``a``, ``b``, ``c`` by default)."""
    from ahl_plugins.data.arrays import from_arrays

    anomalies = {"a": 12, "b": 8, "c": 5} if anomalies is None else anomalies
    rng = np.random.default_rng(0)
    n = n_normal + sum(anomalies.values())
    X = rng.normal(size=(n, d))
    y = np.r_[np.zeros(n_normal, int), np.ones(n - n_normal, int)]
    types = ["normal"] * n_normal + [t for t, k in anomalies.items() for _ in range(k)]
    return from_arrays(X, y, types, name="synthetic", partition=partition)
