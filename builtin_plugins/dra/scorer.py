"""The DRA scorer (Ding et al., CVPR 2022): four heads for disentangled abnormalities.

- ``normal``: holistic normality, global average pool -> FC (C-256-1) -> ``|·|``;
  high for normals (the loss trains it that way), so the anomaly score subtracts it.
- ``seen``: seen abnormality, 1×1 conv -> ``|·|`` -> top-k MIL over positions.
- ``pseudo``: pseudo abnormality, same form as ``seen``, trained on pseudo anomalies.
- ``residual``: latent residual abnormality: (mean of the reference normals' maps
  minus the sample's map) -> conv3×3 + GroupNorm + ReLU -> 1×1 conv -> ``|·|`` -> top-k MIL.

On vectors every head is an MLP ``D -> hidden -> 1`` with a linear output (the
tabular DevNet form); the residual head reads ``reference mean - sample``.
Multi-scale features are scored per scale and averaged; one set of heads
serves all scales when they have the same width (see ``heads.shares_heads``).

Two deliberate deviations from the authors' code, both so that the heads are
pure functions of (parameters, buffers, features), which the AHL learner's
``functional_call`` / ``vmap`` and reproducible scoring need:

- The reference normals are drawn once, in ``prepare``, with the given
  generator, and their per-scale mean is a buffer; DRA re-draws them from
  every training batch.
- The residual head normalises with ``GroupNorm`` instead of ``BatchNorm``:
  GroupNorm has no running statistics to update in place and scores each
  sample independently of its batch, in training and at test time alike.
  No dropout in the normality head, for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.errors import DataError
from builtin_plugins.dra import DRAOptions
from builtin_plugins.heads import (
    ConvTopKHead,
    MLPHead,
    check_features,
    check_map_features,
    group_count,
    shares_heads,
)

HEAD_NAMES = ("normal", "seen", "pseudo", "residual")


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

    def __init__(self, kind: str, channels: int, options: DRAOptions) -> None:
        super().__init__()
        if kind == "map":
            self.normal = HolisticHead(channels, options.normal_hidden)
            self.seen = ConvTopKHead(channels, options.topk_ratio)
            self.pseudo = ConvTopKHead(channels, options.topk_ratio)
            self.residual = ResidualMapHead(channels, options.topk_ratio)
        else:
            self.normal = MLPHead(channels, options.hidden)
            self.seen = MLPHead(channels, options.hidden)
            self.pseudo = MLPHead(channels, options.hidden)
            self.residual = MLPHead(channels, options.hidden)


class DRAScorer(nn.Module):
    """DRA heads over one or more feature scales; see the module docstring."""

    head_names: tuple[str, ...] = HEAD_NAMES

    def __init__(self, spec: FeatureSpec, options: DRAOptions | None = None) -> None:
        super().__init__()
        options = options or DRAOptions()
        self.spec = spec
        self.n_references = options.n_references
        self.shared = shares_heads(spec)
        widths = spec.channels[:1] if self.shared else spec.channels
        self.heads = nn.ModuleList([DRAScoreHeads(spec.kind, c, options) for c in widths])
        for scale in range(spec.n_scales):
            # Empty until ``prepare``; its shape (C×H×W for maps) is only known from data.
            self.register_buffer(self._reference_name(scale), torch.empty(0))

    @staticmethod
    def _reference_name(scale: int) -> str:
        return f"reference_{scale}"

    def reference(self, scale: int) -> torch.Tensor:
        return getattr(self, self._reference_name(scale))

    @property
    def prepared(self) -> bool:
        return all(self.reference(s).numel() > 0 for s in range(self.spec.n_scales))

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        check_features(self.spec, features, "DRA scorer")
        if not self.prepared:
            raise DataError(
                "DRA scorer has no reference normals yet: call scorer.prepare(normal_features, generator) "
                "before training or scoring (the base and AHL trainers do this)"
            )
        per_head: dict[str, list[torch.Tensor]] = {name: [] for name in HEAD_NAMES}
        for scale, x in enumerate(features):
            heads = self.heads[0 if self.shared else scale]
            reference = self.reference(scale)
            if reference.shape != x.shape[1:]:
                raise DataError(
                    f"DRA scorer: scale {scale} features have shape {tuple(x.shape[1:])} per sample but the "
                    f"reference normals have {tuple(reference.shape)}; score with the same extractor and "
                    "image size the model was trained with"
                )
            per_head["normal"].append(heads.normal(x))
            per_head["seen"].append(heads.seen(x))
            per_head["pseudo"].append(heads.pseudo(x))
            per_head["residual"].append(heads.residual(reference.unsqueeze(0) - x))
        return {name: torch.stack(scores).mean(dim=0) for name, scores in per_head.items()}

    def head_maps(self, features: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Per scale, the seen, pseudo and residual heads' per-position scores (``B×H×W``, the maps their
        top-k MIL pools) and the holistic normality score (``(B,)``, constant over the image)."""
        check_map_features(self.spec, features, "DRA scorer")
        if not self.prepared:
            raise DataError("DRA scorer has no reference normals yet: prepare (fit) it before asking for maps")
        maps = []
        for scale, x in enumerate(features):
            heads = self.heads[0 if self.shared else scale]
            maps.append(
                {
                    "normal": heads.normal(x),
                    "seen": heads.seen.position_scores(x),
                    "pseudo": heads.pseudo.position_scores(x),
                    "residual": heads.residual.position_scores(self._residual_input(scale, x)),
                }
            )
        return maps

    def _residual_input(self, scale: int, x: torch.Tensor) -> torch.Tensor:
        """What the residual head reads at ``scale``: reference minus sample, exactly as in ``forward``
        (keep the two in step; tests/maps/test_maps.py checks the maps pool to the head scores)."""
        return self.reference(scale).unsqueeze(0) - x

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Anomaly score = seen + pseudo + residual - normality (each already averaged over scales)."""
        return heads["seen"] + heads["pseudo"] + heads["residual"] - heads["normal"]

    @torch.no_grad()
    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        """Pick ``n_references`` training normals with ``generator``; keep each scale's mean map as a buffer."""
        check_features(self.spec, normal_features, "DRA scorer (reference normals)")
        n = int(normal_features[0].shape[0])
        if n == 0:
            raise DataError("DRA scorer needs at least one training normal to build its reference")
        chosen = torch.randperm(n, generator=generator, device=generator.device)[: min(self.n_references, n)]
        for scale, x in enumerate(normal_features):
            mean = x[chosen.to(x.device)].mean(dim=0)
            setattr(self, self._reference_name(scale), mean.detach().clone())

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing: Any,
        unexpected: Any,
        errors: Any,
    ) -> None:
        # The reference buffers are shaped by ``prepare``; take the saved shape so a fresh
        # (unprepared) scorer can load a trained one.
        for scale in range(self.spec.n_scales):
            key = prefix + self._reference_name(scale)
            if key in state_dict:
                saved = state_dict[key]
                current = self.reference(scale)
                setattr(
                    self,
                    self._reference_name(scale),
                    torch.empty(saved.shape, dtype=current.dtype, device=current.device),
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)
