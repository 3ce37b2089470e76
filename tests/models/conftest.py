"""Small synthetic features for the model tests."""

from __future__ import annotations

import pytest
import torch

from ahl_plugins.features.store import Features
from ahl_plugins.training.data import TrainingData


def _vectors(n: int, dim: int, shift: float, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, dim, generator=generator) + shift


@pytest.fixture
def vector_data():
    """Separable vectors: normals around 0, seen anomalies around +3, pseudo around -3 (one scale)."""

    def make(n_normal: int = 64, n_seen: int = 6, n_pseudo: int = 32, dim: int = 6, seed: int = 0) -> TrainingData:
        g = torch.Generator().manual_seed(seed)
        pseudo = {"synthetic": Features.of([_vectors(n_pseudo, dim, -3.0, g)])} if n_pseudo else {}
        return TrainingData(
            normals=Features.of([_vectors(n_normal, dim, 0.0, g)]),
            seen=Features.of([_vectors(n_seen, dim, 3.0, g)]),
            pseudo=pseudo,
        )

    return make


@pytest.fixture
def map_features():
    """Random ``B×C×H×W`` maps, one tensor per scale."""

    def make(batch: int = 4, channels=(8, 8), sizes=((6, 6), (3, 3)), seed: int = 0) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return [torch.randn(batch, c, h, w, generator=g) for c, (h, w) in zip(channels, sizes, strict=True)]

    return make
