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

    Pixel masks, where there are any (only losses that take per-position labels read them): ``seen_masks``
    one ``g×g`` float mask per labelled anomaly (1 defect, 0 clean; a row of NaN where that anomaly has no
    mask), ``pseudo_masks`` the same per pseudo pool that has them (a pool without an entry: unknown), on
    the square grid of the images the extractor read (``ahl_plugins.training.positions.pool_mask``).
    Normals are clean everywhere and carry none.
    """

    normals: Features
    seen: Features
    pseudo: dict[str, Features] = field(default_factory=dict)
    seen_types: tuple[str, ...] = ()
    seen_masks: torch.Tensor | None = None
    pseudo_masks: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.normals) == 0:
            raise ValueError("TrainingData needs at least one normal sample")
        if self.seen_types and len(self.seen_types) != len(self.seen):
            raise ValueError("seen_types must give one type per seen anomaly")
        if self.seen_masks is not None and (self.seen_masks.dim() != 3 or len(self.seen_masks) != len(self.seen)):
            raise ValueError(
                f"seen_masks must be n_seen×g×g ({len(self.seen)} rows), got shape {tuple(self.seen_masks.shape)}"
            )
        for name, masks in self.pseudo_masks.items():
            if name not in self.pseudo or masks.dim() != 3 or len(masks) != len(self.pseudo[name]):
                raise ValueError(
                    f"pseudo_masks[{name!r}] must be one g×g mask per sample of pseudo pool {name!r}, got shape "
                    f"{tuple(masks.shape)} for {len(self.pseudo.get(name, ()))} samples"
                )

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
            None if self.seen_masks is None else self.seen_masks.to(device),
            {k: v.to(device) for k, v in self.pseudo_masks.items()},
        )
