"""Scoring features with a trained scorer: eval mode, no autograd, in batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ahl_plugins.features.store import Features
from ahl_plugins.training.head_check import check_heads

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

COMBINED = "__combined__"


def _as_features(features: Features | Sequence[torch.Tensor]) -> Features:
    return features if isinstance(features, Features) else Features.of(list(features))


def _score(
    scorer: ScorerModule, features: Features | Sequence[torch.Tensor], batch_size: int, device: torch.device | str
) -> dict[str, np.ndarray]:
    """Heads and the combined score of every sample, computed on ``device`` batch by batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    features = _as_features(features)
    scorer.to(device)
    was_training = scorer.training
    scorer.eval()
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in getattr(scorer, "head_names", ())}
    chunks[COMBINED] = []
    try:
        with torch.inference_mode():
            for start in range(0, len(features), batch_size):
                batch = [t[start : start + batch_size].to(device) for t in features.scales]
                heads = scorer(batch)
                combined = scorer.combine(heads) if isinstance(heads, Mapping) and heads else None
                check_heads(scorer, heads, combined, batch[0].shape[0])
                assert (
                    combined is not None
                )  # check_heads raised unless heads is a non-empty mapping and combined a tensor
                for name, value in heads.items():
                    chunks.setdefault(name, []).append(value.cpu())
                chunks[COMBINED].append(combined.cpu())
    finally:
        scorer.train(was_training)
    return {name: torch.cat(parts).double().numpy() if parts else np.zeros(0) for name, parts in chunks.items()}


def head_scores(
    scorer: ScorerModule,
    features: Features | Sequence[torch.Tensor],
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, np.ndarray]:
    """Every head's score per sample, as float64 arrays (the scorer is moved to ``device``)."""
    scores = _score(scorer, features, batch_size, device)
    scores.pop(COMBINED)
    return scores


def score_features(
    scorer: ScorerModule,
    features: Features | Sequence[torch.Tensor],
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """One anomaly score per sample (``scorer.combine`` of its heads; higher = more anomalous)."""
    return _score(scorer, features, batch_size, device)[COMBINED]
