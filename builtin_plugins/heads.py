"""Building blocks shared by the DevNet and DRA scorers.

Everything here is written for ``torch.func``: no in-place updates of inputs or
parameters, no Python branching on tensor values and no ``.item()``, so the AHL
learner can run the heads through ``functional_call`` and ``vmap``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.errors import DataError


def topk_count(n_positions: int, ratio: float) -> int:
    """How many positions the top-k MIL pooling keeps: ``int(ratio * n)``, at least one (as in DRA)."""
    return max(int(n_positions * ratio), 1)


def topk_mean(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Mean of the largest ``ratio`` share of each row of a ``B×N`` tensor (top-k MIL pooling)."""
    k = topk_count(scores.shape[-1], ratio)
    return torch.topk(scores, k, dim=-1).values.mean(dim=-1)


class ConvTopKHead(nn.Module):
    """1×1 conv to one score per position, ``|·|``, mean of the top-k positions.

    The DevNet image head and DRA's seen/pseudo abnormality heads: an anomaly
    need only show in a few positions, so the image score pools the most
    abnormal ones (multiple-instance learning) rather than the mean.
    """

    def __init__(self, channels: int, topk_ratio: float) -> None:
        super().__init__()
        self.score = nn.Conv2d(channels, 1, kernel_size=1)
        self.topk_ratio = topk_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_position = self.score(x).flatten(1).abs()
        return topk_mean(per_position, self.topk_ratio)

    def position_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The ``B×H×W`` scores the top-k pooling reads: the head's anomaly map on ``x``'s grid."""
        return self.score(x).squeeze(1).abs()


class MLPHead(nn.Module):
    """``D → hidden… → 1`` with ReLU: the tabular DevNet form (one layer of 20 in the KDD'19 paper).

    ``absolute`` takes ``|·|`` of the output, as the map heads do, so the head
    scores abnormality on ``[0, ∞)`` and cannot turn a large negative output
    into a confident "normal".
    """

    def __init__(self, in_dim: int, hidden: int | Sequence[int], absolute: bool = False) -> None:
        super().__init__()
        widths = [hidden] if isinstance(hidden, int) else list(hidden)
        layers: list[nn.Module] = []
        previous = in_dim
        for width in widths:
            layers += [nn.Linear(previous, int(width)), nn.ReLU()]
            previous = int(width)
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(previous, 1)
        self.absolute = bool(absolute)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.out(self.body(x)).squeeze(-1)
        return out.abs() if self.absolute else out


def group_count(channels: int, preferred: int = 32) -> int:
    """The largest divisor of ``channels`` not above ``preferred`` (GroupNorm needs a divisor)."""
    for groups in range(min(preferred, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def shares_heads(spec: FeatureSpec) -> bool:
    """One head for all scales when every scale has the same width.

    That is the papers' case (one backbone applied at two input resolutions,
    one head scoring both); scales of different widths (taps of different
    layers) each get their own head.
    """
    return len(set(spec.channels)) == 1


def check_map_features(spec: FeatureSpec, features: Sequence[torch.Tensor], who: str) -> None:
    """``check_features``, and refuse vector features: only feature maps have positions to map."""
    if spec.kind != "map":
        raise DataError(
            f"{who} has no anomaly maps on vector features: maps need per-position features (B×C×H×W); "
            "use an image extractor that keeps spatial maps"
        )
    check_features(spec, features, who)


def check_features(spec: FeatureSpec, features: Sequence[torch.Tensor], who: str) -> None:
    """Shape checks on static shapes only (safe under ``vmap``), with a message that says how to fix it."""
    if isinstance(features, torch.Tensor):
        raise DataError(
            f"{who} takes a list with one feature tensor per scale, got a single tensor; wrap it as [features]"
        )
    if len(features) != spec.n_scales:
        raise DataError(
            f"{who} was built for {spec.n_scales} feature scale(s) (channels {spec.channels}) "
            f"but got {len(features)}; score with the same feature extractor the model was trained with"
        )
    want_dim = 4 if spec.kind == "map" else 2
    for scale, (tensor, channels) in enumerate(zip(features, spec.channels, strict=True)):
        if tensor.dim() != want_dim:
            shape = "B×C×H×W maps" if spec.kind == "map" else "B×D vectors"
            raise DataError(
                f"{who}: scale {scale} has shape {tuple(tensor.shape)}, expected {shape}; "
                "score with the same feature extractor the model was trained with"
            )
        if tensor.shape[1] != channels:
            raise DataError(
                f"{who}: scale {scale} has {tensor.shape[1]} channels, the model was trained on {channels}; "
                "score with the same feature extractor the model was trained with"
            )
