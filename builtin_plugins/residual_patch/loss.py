"""The residual patch loss: cross-entropy for the two learned heads on the samples each one learns from.

| head | samples | target 1 |
|---|---|---|
| ``evidence`` (top-k MIL over positions) | all | seen and pseudo anomalies |
| ``statistics`` (logistic on map statistics) | normals + seen + pseudo (``statistics_pseudo=False``: without pseudo) | anomalies |

The ``floor`` head has no parameters and no term. Each term is a masked mean over its own samples (zero, with
zero gradient, when a batch holds none), so a batch without seen anomalies trains the evidence head alone.
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

    def __init__(self, statistics_pseudo: bool = True, evidence_weight: float = 1.0, statistics_weight: float = 1.0):
        self.statistics_pseudo = statistics_pseudo
        self.evidence_weight = evidence_weight
        self.statistics_weight = statistics_weight

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

    def __call__(self, heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        terms = self.terms(heads, labels)
        return self.evidence_weight * terms["evidence"] + self.statistics_weight * terms["statistics"]
