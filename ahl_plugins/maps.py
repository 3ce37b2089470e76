"""Anomaly maps: from a scorer's per-position head maps to one map per image.

A scorer that can say *where* it sees an anomaly implements the optional
``head_maps(features)`` of the Scorer contract (``ahl_plugins.contracts``):
per feature scale, each head's score per position (``B×h×w``), or ``(B,)``
for a head without spatial extent (DRA's holistic normality head), which
counts as constant over the image. This module turns those into what a
person looks at, the way the image score is formed from the heads:

1. every scale's map is upsampled (bilinear) to the output size: the input
   image's own height and width, or a smaller size for metrics;
2. scales are averaged, as DevNet and DRA average their per-scale scores;
3. ``scorer.combine`` is applied position by position (DRA: its calibrated
   seen + pseudo + residual (+ distance) − normality), so the map is on the
   anomaly score's scale;
4. optionally, a Gaussian blur with ``sigma`` given in input-image pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ahl_plugins.errors import DataError

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

Size = tuple[int, int]


def has_maps(scorer: nn.Module) -> bool:
    """Whether ``scorer`` implements the optional ``head_maps`` part of the contract
    (for an ensemble: whether every member does)."""
    members = getattr(scorer, "members", None)
    if isinstance(members, nn.ModuleList):
        return all(has_maps(member) for member in members)
    return callable(getattr(scorer, "head_maps", None))


def require_maps(scorer: nn.Module, who: str = "this scorer") -> None:
    if not has_maps(scorer):
        raise DataError(
            f"{who} ({type(scorer).__name__}) does not produce anomaly maps: it has no head_maps(features) method "
            "(an optional part of the Scorer contract, see docs/plugins.md). DevNet and DRA on feature maps have one"
        )


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``B×H×W`` maps with a separable Gaussian (``sigma`` in pixels, kernel ±4σ, borders replicated)."""
    if sigma <= 0:
        return maps
    radius = max(1, int(math.ceil(4 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.pad(maps.unsqueeze(1), (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return x.squeeze(1)


def _checked_head_maps(scorer: ScorerModule, features: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    per_scale = scorer.head_maps(list(features))
    names = tuple(getattr(scorer, "head_names", ()))
    if not isinstance(per_scale, (list, tuple)) or len(per_scale) != len(features):
        raise DataError(
            f"{type(scorer).__name__}.head_maps returned {type(per_scale).__name__} for {len(features)} scale(s); "
            "it must return one dict of head maps per feature scale"
        )
    for scale, maps in enumerate(per_scale):
        if set(maps) != set(names):
            raise DataError(
                f"{type(scorer).__name__}.head_maps scale {scale} has heads {sorted(maps)}; expected {list(names)}"
            )
    return list(per_scale)


def combined_maps(
    scorer: ScorerModule, features: Sequence[torch.Tensor], sizes: Sequence[Size], sigmas: Sequence[float]
) -> list[torch.Tensor]:
    """One ``H_i×W_i`` map per sample of one batch (``sizes[i]`` each), following the steps of the module docstring."""
    per_scale = _checked_head_maps(scorer, features)
    batch = int(features[0].shape[0])
    out = []
    for i in range(batch):
        size = tuple(int(v) for v in sizes[i])
        heads = {}
        for name in per_scale[0]:
            layers = []
            for maps in per_scale:
                value = maps[name][i]
                if value.dim() == 0:
                    layers.append(value.expand(size))
                else:
                    grid = value.unsqueeze(0).unsqueeze(0).float()
                    layers.append(F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[0, 0])
            heads[name] = torch.stack(layers).mean(dim=0).unsqueeze(0)
        combined = scorer.combine(heads)
        out.append(gaussian_blur(combined, float(sigmas[i]))[0])
    return out


def iter_maps(
    scorer: ScorerModule,
    scales: Sequence[torch.Tensor],
    sizes: Sequence[Size],
    *,
    sigmas: Sequence[float] | float = 0.0,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> Iterator[np.ndarray]:
    """Maps of all samples, in order, as float32 arrays of ``sizes[i]``; eval mode, no autograd."""
    require_maps(scorer)
    n = int(scales[0].shape[0])
    if len(sizes) != n:
        raise DataError(f"{len(sizes)} output sizes for {n} samples")
    sigma_list = [float(sigmas)] * n if isinstance(sigmas, (int, float)) else [float(s) for s in sigmas]
    scorer.to(device)
    was_training = scorer.training
    scorer.eval()
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            # inference mode only around the computation, never across a yield: a caller that stops early (or
            # keeps the generator in a traceback) would otherwise leave its whole thread without autograd
            with torch.inference_mode():
                batch = [t[start:stop].to(device) for t in scales]
                values = [
                    v.float().cpu().numpy()
                    for v in combined_maps(scorer, batch, sizes[start:stop], sigma_list[start:stop])
                ]
            yield from values
    finally:
        scorer.train(was_training)


def fit_within(size: Size, max_side: int | None) -> Size:
    """``size`` (H, W) shrunk, aspect kept, so that its longer side is at most ``max_side``."""
    height, width = int(size[0]), int(size[1])
    if max_side is None or max(height, width) <= max_side:
        return height, width
    factor = max_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))
