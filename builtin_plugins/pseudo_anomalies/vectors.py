"""Feature-space pseudo anomalies for vectors (tabular rows, pooled embeddings).

They act on standardised features, so "a few standard deviations" means the
same thing in every column. Both break the joint structure of normal rows
while keeping each value plausible on its own (swap) or push a few values
out of the normal range (shift): the two ways tabular anomalies usually look.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel

from ahl_plugins.contracts import PseudoAnomalyGenerator
from ahl_plugins.errors import DataError
from builtin_plugins.pseudo_anomalies import (
    FeatureShiftOptions,
    FeatureSwapOptions,
    KnnExtrapolateOptions,
    LocalNoiseOptions,
)


def _check_rows(x: torch.Tensor, name: str) -> None:
    if x.dim() != 2 or x.shape[1] < 1:
        raise DataError(f"{name} works on B×D feature vectors, got shape {tuple(x.shape)}")


def _subset_mask(batch: int, dim: int, fraction: tuple[float, float], g: torch.Generator) -> torch.Tensor:
    """B×D bool: per row, a random subset of ``ceil(f·D)`` features (at least one), f drawn per row."""
    low, high = fraction
    f = low + (high - low) * torch.rand(batch, generator=g)
    counts = (f * dim).ceil().clamp(1, dim).long()
    ranks = torch.rand(batch, dim, generator=g).argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


class _VectorGenerator(PseudoAnomalyGenerator):
    domain = "vector"
    name = "vector"
    options: BaseModel  # each generator's own options model, set by its __init__

    def fingerprint(self) -> str:
        return f"{self.name}:{self.options.model_dump_json()}:v1"


class FeatureSwap(_VectorGenerator):
    """Replace a random subset of a row's features with another normal row's."""

    name = "feature_swap"

    options: FeatureSwapOptions

    def __init__(self, options: FeatureSwapOptions) -> None:
        self.options = options

    def generate(self, x, pool, generator):
        _check_rows(x, self.name)
        if pool is None or pool.dim() != 2 or len(pool) == 0:
            raise DataError(f"{self.name} needs a pool of other normal rows to borrow features from; it is empty")
        if pool.shape[1] != x.shape[1]:
            raise DataError(f"{self.name}: pool rows have {pool.shape[1]} features, the batch {x.shape[1]}")
        batch, dim = x.shape
        picks = torch.randint(len(pool), (batch,), generator=generator)
        if len(pool) > 1:
            # A row drawn as its own donor would come out unchanged: redraw those (a few rounds).
            for _ in range(4):
                same = (pool[picks].to(x.device, x.dtype) == x).all(dim=1).cpu()
                if not bool(same.any()):
                    break
                picks = torch.where(same, torch.randint(len(pool), (batch,), generator=generator), picks)
        donors = pool[picks].to(x.device, x.dtype)
        mask = _subset_mask(batch, dim, self.options.fraction, generator).to(x.device)
        return torch.where(mask, donors, x), mask


class FeatureShift(_VectorGenerator):
    """Move a random subset of features along a random direction, by a few feature-wise stds.

    The direction is Gaussian on the chosen features, scaled so that its RMS
    per moved feature is ``a`` standard deviations, ``a`` drawn from
    ``magnitude``; stds come from the pool (1 where it has fewer than 2 rows).
    """

    name = "feature_shift"

    options: FeatureShiftOptions

    def __init__(self, options: FeatureShiftOptions) -> None:
        self.options = options

    def generate(self, x, pool, generator):
        _check_rows(x, self.name)
        batch, dim = x.shape
        if pool is not None and pool.dim() == 2 and len(pool) >= 2:
            if pool.shape[1] != dim:
                raise DataError(f"{self.name}: pool rows have {pool.shape[1]} features, the batch {dim}")
            std = pool.float().std(dim=0).cpu()
            std = torch.where(std > 1e-8, std, torch.ones_like(std))
        else:
            std = torch.ones(dim)
        mask = _subset_mask(batch, dim, self.options.fraction, generator)
        direction = torch.randn(batch, dim, generator=generator) * mask
        rms = (direction.square().sum(dim=1) / mask.sum(dim=1)).sqrt().clamp_min(1e-12)
        low, high = self.options.magnitude
        size = low + (high - low) * torch.rand(batch, generator=generator)
        shift = direction / rms[:, None] * size[:, None] * std
        out = x + shift.to(x.device, x.dtype)
        return out, mask.to(x.device)


def _neighbours(x: torch.Tensor, pool: torch.Tensor | None, k: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (B×k) and indices of each row's k nearest pool rows, the row itself (distance 0) skipped."""
    _check_rows(x, name)
    if pool is None or pool.dim() != 2 or len(pool) < 2:
        raise DataError(f"{name} needs a pool of at least 2 other normal rows to measure local distances")
    if pool.shape[1] != x.shape[1]:
        raise DataError(f"{name}: pool rows have {pool.shape[1]} features, the batch {x.shape[1]}")
    ref = pool.to(x.device, torch.float32)
    distances = torch.cdist(x.float(), ref)
    distances = torch.where(distances <= 1e-6, torch.full_like(distances, float("inf")), distances)
    k = min(int(k), len(ref) - 1)
    values, indices = torch.topk(distances, k, dim=1, largest=False)
    values = torch.where(torch.isfinite(values), values, torch.zeros_like(values))
    return values, indices


class LocalNoise(_VectorGenerator):
    """Add isotropic Gaussian noise whose norm is a few times the row's k-th nearest-normal distance.

    A fixed noise level is too small in sparse regions and too large in dense
    ones; scaled to the local k-NN distance, every pseudo anomaly lands just
    outside its own neighbourhood, the way a subtle real anomaly sits just
    off the normal data in an embedding.
    """

    name = "local_noise"
    default = False  # opt-in: see docs/benchmarks/pseudo_anomaly_heads.md

    options: LocalNoiseOptions

    def __init__(self, options: LocalNoiseOptions) -> None:
        self.options = options

    def generate(self, x, pool, generator):
        distances, _ = _neighbours(x, pool, self.options.neighbours, self.name)
        batch, dim = x.shape
        radius = distances[:, -1].cpu()
        low, high = self.options.magnitude
        size = (low + (high - low) * torch.rand(batch, generator=generator)) * radius
        noise = torch.randn(batch, dim, generator=generator)
        noise = noise / noise.norm(dim=1, keepdim=True).clamp_min(1e-12) * size[:, None]
        return x + noise.to(x.device, x.dtype), torch.ones(batch, dim, dtype=torch.bool, device=x.device)


class KnnExtrapolate(_VectorGenerator):
    """Push a row away from the mean of its k nearest normals: ``x + s (x - mean_kNN(x))``.

    The offset of a row from its local mean points out of the normal data
    where the data are locally thin, so extrapolating along it leaves the
    normal manifold in a direction the data themselves suggest, rather than
    along a random axis.
    """

    name = "knn_extrapolate"
    default = False  # opt-in: see docs/benchmarks/pseudo_anomaly_heads.md

    options: KnnExtrapolateOptions

    def __init__(self, options: KnnExtrapolateOptions) -> None:
        self.options = options

    def generate(self, x, pool, generator):
        _, indices = _neighbours(x, pool, self.options.neighbours, self.name)
        local_mean = pool.to(x.device, x.dtype)[indices].mean(dim=1)
        low, high = self.options.step
        step = (low + (high - low) * torch.rand(x.shape[0], generator=generator)).to(x.device, x.dtype)
        out = x + step[:, None] * (x - local_mean)
        return out, torch.ones_like(x, dtype=torch.bool)
