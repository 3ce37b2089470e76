"""Deep SAD (Ruff et al., ICLR 2020): a hypersphere centre, distance as the score.

The encoder φ has no bias terms: with biases a network can map every input
to the centre and reach zero loss without learning anything (the
"hypersphere collapse" of Deep SVDD). The centre is fixed before training,
from the training normals, and kept as a buffer, so the scorer's whole state
is parameters and buffers, as the AHL learner requires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ahl_plugins import LABEL_NORMAL, FeatureSpec

HEAD = "distance"


def pooled(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """One vector per sample: maps average-pooled per scale, scales concatenated."""
    parts = [f.mean(dim=(2, 3)) if f.dim() == 4 else f for f in features]
    return torch.cat(parts, dim=1)


class DeepSADScorer(nn.Module):
    """One head, ``distance`` = ‖φ(x) − c‖²; it is also the anomaly score."""

    head_names: tuple[str, ...] = (HEAD,)
    supported_kinds: tuple[str, ...] = ("map", "vector")

    def __init__(self, spec: FeatureSpec, options) -> None:  # options: DeepSADScorerOptions
        super().__init__()
        self.channels = tuple(spec.channels)
        self.center_eps = float(options.center_eps)
        widths = [sum(spec.channels), *options.hidden, options.rep_dim]
        layers: list[nn.Module] = []
        for i, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            if i:
                layers.append(nn.LeakyReLU(0.1))
            layers.append(nn.Linear(width_in, width_out, bias=False))
        self.encoder = nn.Sequential(*layers)
        self.register_buffer("center", torch.zeros(options.rep_dim))

    def _check(self, features: Sequence[torch.Tensor]) -> None:
        got = tuple(int(f.shape[1]) for f in features)
        if got != self.channels:
            raise ValueError(
                f"deepsad scorer was built for feature channels {self.channels} per scale, got {got}; "
                "score with the extractor the model was fitted with"
            )

    def embed(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        self._check(features)
        return self.encoder(pooled(features))

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {HEAD: ((self.embed(features) - self.center) ** 2).sum(dim=1)}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return heads[HEAD]

    @torch.no_grad()
    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        """Centre = mean of φ over the training normals (no randomness needed)."""
        center = self.embed(normal_features).mean(dim=0)
        small = center.abs() < self.center_eps
        center[small & (center < 0)] = -self.center_eps
        center[small & (center >= 0)] = self.center_eps
        self.center.copy_(center)


class DeepSADLoss:
    """``loss(heads, labels)``: mean of d for normals and η / (d + ε) for anomalies (labels 1 and 2)."""

    def __init__(self, eta: float = 1.0, eps: float = 1e-6) -> None:
        self.eta = float(eta)
        self.eps = float(eps)

    def __call__(self, heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        if HEAD not in heads:
            raise KeyError(f"the deepsad loss needs the head {HEAD!r}; the scorer gave {sorted(heads)}")
        distance = heads[HEAD]
        anomalous = labels != LABEL_NORMAL
        per_sample = torch.where(anomalous, self.eta / (distance + self.eps), distance)
        return per_sample.mean()
