"""The DevNet scorer (Pang et al., KDD 2019; its image form as used by DRA and AHL).

On feature maps: a 1×1 conv gives one score per position, ``|·|``, and the
mean of the top 10% positions is the scale's score (few-shot DevNet, Pang et
al. 2021). On vectors: the original tabular DevNet, one hidden layer of 20
ReLU units and a linear score. Multi-scale features are scored per scale and
averaged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ahl_plugins.contracts import FeatureSpec
from builtin_plugins.devnet import DevNetOptions
from builtin_plugins.heads import ConvTopKHead, MLPHead, check_features, check_map_features, shares_heads


class DevNetScorer(nn.Module):
    """One head, ``score``: the deviation-scale anomaly score."""

    head_names: tuple[str, ...] = ("score",)

    def __init__(self, spec: FeatureSpec, options: DevNetOptions | None = None) -> None:
        super().__init__()
        options = options or DevNetOptions()
        self.spec = spec
        self.shared = shares_heads(spec)
        widths = spec.channels[:1] if self.shared else spec.channels
        heads: list[nn.Module]
        if spec.kind == "map":
            heads = [ConvTopKHead(c, options.topk_ratio) for c in widths]
        else:
            heads = [MLPHead(c, options.hidden) for c in widths]
        self.heads = nn.ModuleList(heads)

    def _head(self, scale: int) -> nn.Module:
        return self.heads[0 if self.shared else scale]

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        check_features(self.spec, features, "DevNet scorer")
        per_scale = [self._head(s)(x) for s, x in enumerate(features)]
        return {"score": torch.stack(per_scale).mean(dim=0)}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return heads["score"]

    def head_maps(self, features: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Per scale, the ``|1×1 conv|`` score of every position (``B×H×W``): the map whose top-k mean is the score."""
        check_map_features(self.spec, features, "DevNet scorer")
        maps = []
        for s, x in enumerate(features):
            head = self._head(s)
            assert isinstance(head, ConvTopKHead)  # feature maps (checked above) get the map head
            maps.append({"score": head.position_scores(x)})
        return maps

    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        """DevNet needs nothing from the normals before training."""
