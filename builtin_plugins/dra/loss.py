"""The DRA loss: each head trained with the deviation loss on the samples DRA assigns it.

| head | samples | anomalous target |
|---|---|---|
| ``normal`` | all | normals (it scores *normality*; anomalies of both kinds are its "inliers") |
| ``seen`` | normals + seen anomalies | seen anomalies |
| ``pseudo`` | normals + pseudo anomalies | pseudo anomalies |
| ``residual`` | all | seen and pseudo anomalies |

Each head's term is the mean over its own samples (a masked mean that is zero,
with zero gradient, when a batch holds none of them), and the four terms are
summed, as in the authors' code. The reference statistics are drawn once; see
:mod:`builtin_plugins.deviation`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN
from builtin_plugins.deviation import Deviation, masked_mean, require_heads

HEADS = ("normal", "seen", "pseudo", "residual")


class DRALoss:
    """``loss(heads, labels)`` for the four DRA heads."""

    def __init__(self, margin: float = 5.0, n_references: int = 5000, reference_seed: int = 0) -> None:
        self.deviation = Deviation(margin, n_references, reference_seed)

    def terms(self, heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four per-head losses, before summing (useful for logging and tests)."""
        require_heads(heads, HEADS, "dra")
        normal = labels == LABEL_NORMAL
        seen = labels == LABEL_SEEN
        pseudo = labels == LABEL_PSEUDO
        everyone = torch.ones_like(normal)
        dev = self.deviation.per_sample
        return {
            "normal": masked_mean(dev(heads["normal"], normal), everyone),
            "seen": masked_mean(dev(heads["seen"], seen), normal | seen),
            "pseudo": masked_mean(dev(heads["pseudo"], pseudo), normal | pseudo),
            "residual": masked_mean(dev(heads["residual"], ~normal), everyone),
        }

    def __call__(self, heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        terms = self.terms(heads, labels)
        return terms["normal"] + terms["seen"] + terms["pseudo"] + terms["residual"]
