"""Statistics of an anomaly map, per image: how high the map goes and how much of it is high.

SegAD (CVPR 2024) showed that a small classifier on a few statistics of a label-free anomaly map, fitted with
image labels only, learns what a defect's map looks like, and that this carries to defect types it never saw.
This module is the one implementation of those statistics: the residual patch model's statistics head and the
map-statistics image score of every map-drawing model (:mod:`ahl_plugins.map_scoring`) both call it.

Pure tensor code with no data-dependent branches, so it runs under ``functional_call`` / ``vmap`` too.
"""

from __future__ import annotations

import torch

#: the statistics of one map, in the order :func:`map_statistics` returns them
STATISTICS = ("max", "top2%", "top10%", "mean", "median", "share>q99", "share>q999")
#: the quantiles of the training normals' map values (all positions of all normals, pooled) that the two
#: share-above statistics compare with
THRESHOLD_QUANTILES = (0.99, 0.999)


def top_count(n_positions: int, ratio: float) -> int:
    """How many positions a top-``ratio`` mean keeps: ``int(ratio * n)``, at least one (as top-k MIL pooling)."""
    return max(int(n_positions * ratio), 1)


def map_statistics(maps: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``B×7`` statistics (:data:`STATISTICS`) of ``B×H×W`` maps: max, mean of the top 2% and top 10% of
    positions, mean, median (the lower middle value for an even count), and the share of positions above each of
    ``thresholds`` (the training normals' map quantiles :data:`THRESHOLD_QUANTILES` of this scale)."""
    flat = maps.flatten(1)
    n = flat.shape[1]
    ordered = torch.sort(flat, dim=1, descending=True).values
    top2 = ordered[:, : top_count(n, 0.02)].mean(dim=1)
    top10 = ordered[:, : top_count(n, 0.1)].mean(dim=1)
    shares = (flat[:, :, None] > thresholds[None, None, :]).to(flat.dtype).mean(dim=1)
    columns = [ordered[:, 0], top2, top10, flat.mean(dim=1), ordered[:, n // 2]]
    return torch.cat([torch.stack(columns, dim=1), shares], dim=1)


def normal_thresholds(normal_maps: torch.Tensor, quantiles: tuple[float, ...] = THRESHOLD_QUANTILES) -> torch.Tensor:
    """The quantiles of every position of the training normals' ``B×H×W`` maps, pooled (float64)."""
    levels = torch.tensor(quantiles, dtype=torch.float64)
    values = normal_maps.detach().double().flatten().cpu()
    if values.numel() > 16_000_000:  # torch.quantile's input limit: an even subsample keeps the quantiles
        values = values[:: values.numel() // 16_000_000 + 1]
    return torch.quantile(values, levels)


def robust_center_spread(values: torch.Tensor) -> tuple[float, float]:
    """Median and IQR / 1.349 of ``values`` (the standard deviation for a normal distribution; a spread floor
    keeps a constant column finite)."""
    values = values.double().flatten()
    q1, median, q3 = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    floor = max(float(values.std()) if values.numel() > 1 else 0.0, float(values.abs().mean()), 1.0) * 1e-3
    return float(median), max(float(q3 - q1) / 1.349, floor)
