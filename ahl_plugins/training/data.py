"""What every trainer (base or AHL) receives: features only, never test data."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN
from ahl_plugins.features.store import Features


@dataclass(frozen=True)
class TrainingData:
    """Training features by role.

    ``normals`` are the training normals (unlabelled contamination included),
    ``seen`` the labelled anomalies with their ``seen_types``, and ``pseudo``
    one pool of pseudo-anomaly features per generator name.
    """

    normals: Features
    seen: Features
    pseudo: dict[str, Features] = field(default_factory=dict)
    seen_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.normals) == 0:
            raise ValueError("TrainingData needs at least one normal sample")
        if self.seen_types and len(self.seen_types) != len(self.seen):
            raise ValueError("seen_types must give one type per seen anomaly")

    def all_pseudo(self) -> Features:
        pools = [self.pseudo[name] for name in sorted(self.pseudo)]
        return Features.cat(pools) if pools else self.normals.empty_like()

    def stacked(self) -> tuple[Features, torch.Tensor]:
        """All samples in one set (normals, seen, pseudo) with labels 0/1/2."""
        pseudo = self.all_pseudo()
        features = Features.cat([self.normals, self.seen, pseudo])
        labels = torch.cat(
            [
                torch.full((len(self.normals),), LABEL_NORMAL, dtype=torch.long),
                torch.full((len(self.seen),), LABEL_SEEN, dtype=torch.long),
                torch.full((len(pseudo),), LABEL_PSEUDO, dtype=torch.long),
            ]
        )
        return features, labels

    def to(self, device: torch.device | str) -> TrainingData:
        return TrainingData(
            self.normals.to(device),
            self.seen.to(device),
            {k: v.to(device) for k, v in self.pseudo.items()},
            self.seen_types,
        )
