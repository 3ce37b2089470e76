"""DRA's trained heads for one scale width (Ding et al., CVPR 2022): holistic normality, seen and pseudo
abnormality (top-k MIL over positions), and the latent residual head; MLPs on vectors. Pure modules: the scorer
(``builtin_plugins.dra.scorer``) feeds them and combines what they return.
"""

from __future__ import annotations

import torch
from torch import nn

from builtin_plugins.dra import DRAOptions
from builtin_plugins.heads import ConvTopKHead, MLPHead, group_count, topk_mean


class HolisticHead(nn.Module):
    """Global average pool -> FC -> ReLU -> FC -> ``|·|``."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(channels, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        return self.out(torch.relu(self.hidden(pooled))).squeeze(-1).abs()


class ResidualMapHead(nn.Module):
    """conv3×3 + GroupNorm + ReLU on the residual map, then top-k MIL."""

    def __init__(self, channels: int, topk_ratio: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.norm = nn.GroupNorm(group_count(channels), channels)
        self.pool = ConvTopKHead(channels, topk_ratio)

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.norm(self.conv(residual))))

    def position_scores(self, residual: torch.Tensor) -> torch.Tensor:
        return self.pool.position_scores(torch.relu(self.norm(self.conv(residual))))


class DRAScoreHeads(nn.Module):
    """The four heads for one scale width."""

    normal: HolisticHead | MLPHead
    seen: ConvTopKHead | MLPHead
    pseudo: ConvTopKHead | MLPHead
    residual: ResidualMapHead | MLPHead

    def __init__(self, kind: str, channels: int, options: DRAOptions) -> None:
        super().__init__()
        if kind == "map":
            self.normal = HolisticHead(channels, options.normal_hidden)
            self.seen = ConvTopKHead(channels, options.topk_ratio)
            self.pseudo = ConvTopKHead(channels, options.topk_ratio)
            self.residual = ResidualMapHead(channels, options.topk_ratio)
        else:
            absolute = options.vector_head_output == "abs"
            self.normal = MLPHead(channels, options.hidden, absolute)
            self.seen = MLPHead(channels, options.hidden, absolute)
            self.pseudo = MLPHead(channels, options.hidden, absolute)
            self.residual = MLPHead(channels, options.hidden, absolute)


def residual_length(residual: torch.Tensor, topk_ratio: float) -> torch.Tensor:
    """The residual's Euclidean length: per sample (vectors) or per position, top-k pooled (maps)."""
    if residual.dim() == 2:
        return residual.norm(dim=1)
    return topk_mean(residual.norm(dim=1).flatten(1), topk_ratio)
