"""Per-position labels, for the losses that declare them: masks to targets at each head map's resolution.

A loss with ``uses_position_labels = True`` (``ahl_plugins.contracts.PositionLoss``) is called as
``loss(heads, labels, positions=...)``; every other loss exactly as before, ``loss(heads, labels)``. The
targets are computed once per training run for every stacked sample (``TrainingData.stacked()`` order) and
gathered by the same rows as the features, so they stay aligned with their samples through balanced batches
and HADG's support and query sets alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F

from ahl_plugins.contracts import POSITION_UNKNOWN, Loss, PositionLoss, takes_position_labels
from ahl_plugins.errors import InvalidComponentError
from ahl_plugins.training.data import TrainingData

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

Positions = dict[str, torch.Tensor]


def position_head_names(scorer: Any) -> tuple[str, ...]:
    """The scorer's declared per-position head maps (``position_heads``), or none."""
    return tuple(str(name) for name in getattr(scorer, "position_heads", ()) or ())


def head_map_sizes(scorer: ScorerModule, features: Sequence[torch.Tensor]) -> dict[str, tuple[int, int]]:
    """``{name: (h, w)}`` of the scorer's position heads, from one forward on the first two rows (eval mode,
    no autograd: nothing changes); a declared head that is missing or not ``B×h×w`` is an error naming it."""
    names = position_head_names(scorer)
    if not names:
        return {}
    rows = min(2, int(features[0].shape[0]))
    was_training = scorer.training
    scorer.eval()
    try:
        with torch.no_grad():
            heads = scorer([t[:rows] for t in features], positions=True)
    finally:
        scorer.train(was_training)
    sizes = {}
    for name in names:
        value = heads.get(name) if isinstance(heads, Mapping) else None
        if not isinstance(value, torch.Tensor) or value.dim() != 3 or value.shape[0] != rows:
            got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else repr(type(value).__name__)
            raise InvalidComponentError(
                f"scorer {type(scorer).__name__} declares position head {name!r}, but forward(features, "
                f"positions=True) returned {got} for it on a batch of {rows}; expected a B×h×w map. Return every "
                "name of position_heads when positions=True, or leave it out of position_heads"
            )
        sizes[name] = (int(value.shape[1]), int(value.shape[2]))
    return sizes


def mask_targets(masks: torch.Tensor | None, n: int, size: tuple[int, int]) -> torch.Tensor:
    """``n×h×w`` targets of ``n×g×g`` masks (NaN rows: unknown): 1 where any of the cell's mask is, else 0;
    unknown rows, and every row when ``masks`` is None, are NaN."""
    if masks is None:
        return torch.full((n, *size), POSITION_UNKNOWN)
    masks = masks.detach().float().cpu()
    known = ~torch.isnan(masks).flatten(1).any(dim=1)
    pooled = F.adaptive_max_pool2d(torch.nan_to_num(masks, nan=0.0)[:, None], size)[:, 0]
    return torch.where(known[:, None, None], pooled, torch.full_like(pooled, POSITION_UNKNOWN))


def position_targets(data: TrainingData, sizes: Mapping[str, tuple[int, int]]) -> Positions:
    """``{name: N×h×w}`` in ``data.stacked()`` order: normals 0 everywhere, then the labelled anomalies
    (their masks, NaN without), then each pseudo pool in name order (its generator's masks, NaN without)."""
    out = {}
    for name, size in sizes.items():
        parts = [torch.zeros(len(data.normals), *size), mask_targets(data.seen_masks, len(data.seen), size)]
        for pool in sorted(data.pseudo):
            parts.append(mask_targets(data.pseudo_masks.get(pool), len(data.pseudo[pool]), size))
        out[name] = torch.cat(parts)
    return out


class Supervision:
    """How a trainer calls the loss and the scorer: exactly as before for a loss that takes image labels only;
    with ``positions=True`` (scorer) and per-position targets (loss) for one that declares it."""

    def __init__(self, loss: Loss, targets: Positions | None = None) -> None:
        self.loss = loss
        self.declared = takes_position_labels(loss)
        self.targets: Positions = dict(targets or {}) if self.declared else {}

    @classmethod
    def build(
        cls, scorer: ScorerModule, loss: Loss, data: TrainingData, features: Sequence[torch.Tensor]
    ) -> Supervision:
        """For training ``scorer`` on ``data`` (``features`` = its stacked features); the targets only when the
        loss declares per-position labels and the scorer draws position heads."""
        if not takes_position_labels(loss):
            return cls(loss)
        targets = position_targets(data, head_map_sizes(scorer, features))
        return cls(loss, {k: v.to(features[0].device) for k, v in targets.items()})

    @property
    def forward_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the scorer's forward: ``positions=True`` only when its maps are needed."""
        return {"positions": True} if self.targets else {}

    def rows(self, index: torch.Tensor) -> Positions:
        """The targets of stacked rows ``index`` (any shape, e.g. ``T×B``): ``{name: index.shape×h×w}``."""
        flat = index.reshape(-1)
        return {
            name: t.index_select(0, flat.to(t.device)).reshape(*index.shape, *t.shape[1:])
            for name, t in self.targets.items()
        }

    def __call__(self, heads: Mapping[str, torch.Tensor], labels: torch.Tensor, positions: Positions) -> torch.Tensor:
        if self.declared:
            return cast(PositionLoss, self.loss)(heads, labels, positions=positions)
        return self.loss(heads, labels)
