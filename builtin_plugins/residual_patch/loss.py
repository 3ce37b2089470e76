"""The residual patch loss: cross-entropy for the two learned heads on the samples each one learns from.

| head | samples | target 1 |
|---|---|---|
| ``evidence`` (top-k MIL over positions) | all | seen and pseudo anomalies |
| ``statistics`` (logistic on map statistics) | normals + seen + pseudo (``statistics_pseudo=False``: without pseudo) | anomalies |

The ``floor`` head has no parameters and no term. Each term is a masked mean over its own samples (zero, with
zero gradient, when a batch holds none), so a batch without seen anomalies trains the evidence head alone.

With ``position_weight > 0`` the loss takes per-position labels (``uses_position_labels``): the evidence head's
logits per position (the scorer's ``evidence_map_<scale>``) get a class-balanced cross-entropy on every position
whose label is known (normals everywhere; labelled anomalies with a ground-truth mask; pseudo anomalies with
their generator's mask), in addition to the top-k MIL term, which still teaches from the image label where a
mask is missing. With the default 0 the loss is called and computes exactly as without masks.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN
from builtin_plugins.deviation import masked_mean, require_heads

HEADS = ("evidence", "statistics")


class ResidualPatchLoss:
    """``loss(heads, labels)`` for the residual patch scorer's learned heads."""

    def __init__(
        self,
        statistics_pseudo: bool = True,
        evidence_weight: float = 1.0,
        statistics_weight: float = 1.0,
        position_weight: float = 0.0,
    ):
        self.statistics_pseudo = statistics_pseudo
        self.evidence_weight = evidence_weight
        self.statistics_weight = statistics_weight
        self.position_weight = position_weight
        #: per-position labels only when their term counts, so the default run is today's, call for call
        self.uses_position_labels = position_weight > 0

    def terms(self, heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The two per-head losses, before weighting."""
        require_heads(heads, HEADS, "residual_patch")
        anomalous = (labels != LABEL_NORMAL).to(heads["evidence"].dtype)
        statistics_rows = (labels == LABEL_NORMAL) | (labels == LABEL_SEEN)
        if self.statistics_pseudo:
            statistics_rows = statistics_rows | (labels == LABEL_PSEUDO)
        everyone = torch.ones_like(statistics_rows)
        evidence = F.binary_cross_entropy_with_logits(heads["evidence"], anomalous, reduction="none")
        statistics = F.binary_cross_entropy_with_logits(heads["statistics"], anomalous, reduction="none")
        return {"evidence": masked_mean(evidence, everyone), "statistics": masked_mean(statistics, statistics_rows)}

    def __call__(
        self,
        heads: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        *,
        positions: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        terms = self.terms(heads, labels)
        value = self.evidence_weight * terms["evidence"] + self.statistics_weight * terms["statistics"]
        if positions:
            value = value + self.position_weight * position_term(heads, positions)
        return value


def position_term(heads: Mapping[str, torch.Tensor], positions: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean over the maps of a class-balanced cross-entropy on the positions with a known label (not NaN):
    half the weight on defect positions, half on clean ones, since defects cover a few positions only."""
    require_heads(heads, positions, "residual_patch (position labels)")
    values = []
    for name, target in positions.items():
        logits = heads[name]
        known = ~torch.isnan(target)
        clean_target = torch.nan_to_num(target, nan=0.0).to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, clean_target, reduction="none")
        defect = known & (clean_target > 0.5)
        clean = known & (clean_target <= 0.5)
        values.append(0.5 * (masked_mean(bce, defect) + masked_mean(bce, clean)))
    return torch.stack(values).mean()
