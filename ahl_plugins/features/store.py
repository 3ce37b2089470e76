"""Per-scale feature tensors for a set of samples, indexed together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ahl_plugins.contracts import FeatureKind, FeatureSpec


@dataclass(frozen=True)
class Features:
    """One tensor per scale, all with the same first dimension (the samples)."""

    scales: tuple[torch.Tensor, ...]

    def __post_init__(self) -> None:
        if not self.scales:
            raise ValueError("Features needs at least one scale")
        n = self.scales[0].shape[0]
        if any(t.shape[0] != n for t in self.scales):
            raise ValueError(
                f"all scales must hold the same number of samples, got {[t.shape[0] for t in self.scales]}"
            )

    @classmethod
    def of(cls, scales: Sequence[torch.Tensor]) -> Features:
        return cls(tuple(scales))

    @classmethod
    def cat(cls, parts: Sequence[Features]) -> Features:
        parts = [p for p in parts if len(p)] or list(parts[:1])
        return cls(tuple(torch.cat([p.scales[i] for p in parts]) for i in range(parts[0].n_scales)))

    def empty_like(self) -> Features:
        return Features(tuple(t[:0] for t in self.scales))

    def __len__(self) -> int:
        return int(self.scales[0].shape[0])

    def __getitem__(self, index: torch.Tensor | slice | Sequence[int] | np.ndarray) -> Features:
        if not isinstance(index, (slice, torch.Tensor)):
            index = torch.as_tensor(list(index), dtype=torch.long)
        return Features(tuple(t[index] for t in self.scales))

    @property
    def n_scales(self) -> int:
        return len(self.scales)

    @property
    def spec(self) -> FeatureSpec:
        kind: FeatureKind = "map" if self.scales[0].dim() == 4 else "vector"
        return FeatureSpec(kind, tuple(int(t.shape[1]) for t in self.scales))

    def to(self, device: torch.device | str) -> Features:
        return Features(tuple(t.to(device) for t in self.scales))

    def as_list(self) -> list[torch.Tensor]:
        return list(self.scales)
