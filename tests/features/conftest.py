"""Fixtures for the features tests: tiny synthetic images and a small random-weight ResNet-18."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from builtin_plugins.extractors import TorchvisionOptions
from builtin_plugins.extractors.torchvision_cnn import TorchvisionExtractor

SMALL = 64


def write_images(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Small images of mixed modes (gray, RGB, RGBA) and sizes, as real folders hold."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        h, w = int(rng.integers(30, 60)), int(rng.integers(30, 60))
        mode = ("L", "RGB", "RGBA")[i % 3]
        channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
        array = rng.integers(0, 256, size=(h, w, *channels), dtype=np.uint8)
        path = folder / f"img_{seed}_{i:03d}.png"
        Image.fromarray(array, mode=mode).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def make_images():
    """``make_images(folder, count, seed)`` writes small synthetic images and returns their paths."""
    return write_images


@pytest.fixture
def image_paths(tmp_path) -> list[Path]:
    return write_images(tmp_path / "images", 6)


@pytest.fixture(scope="session")
def tiny_resnet() -> TorchvisionExtractor:
    """ResNet-18, seeded random weights, 64 px, two scales: fast and deterministic."""
    return TorchvisionExtractor("resnet18", TorchvisionOptions(weights="none", image_size=SMALL))


class CallCounter:
    """Wraps an extractor's ``extract`` to count backbone calls and the items they saw."""

    def __init__(self, extractor, monkeypatch) -> None:
        self.calls = 0
        self.items = 0
        original = extractor.extract

        def counted(batch: torch.Tensor):
            self.calls += 1
            self.items += int(batch.shape[0])
            return original(batch)

        monkeypatch.setattr(extractor, "extract", counted)


@pytest.fixture
def count_calls(monkeypatch):
    return lambda extractor: CallCounter(extractor, monkeypatch)
