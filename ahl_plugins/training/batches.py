"""Balanced batches: equal shares of normals, seen anomalies and pseudo anomalies."""

from __future__ import annotations

import torch


def balanced_indices(labels: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of one batch drawn with an equal share per label present.

    Shares are ``batch_size // n_labels`` (1/3 each with normals, seen and
    pseudo anomalies; half/half when one kind is missing); the remainder goes
    to normals. Drawing is with replacement, since seen anomalies are few.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    labels = labels.cpu()
    present = [int(v) for v in torch.unique(labels).tolist()]
    if not present:
        raise ValueError("cannot draw a batch from an empty set")
    share, remainder = divmod(batch_size, len(present))
    picks = []
    for value in present:
        members = torch.nonzero(labels == value, as_tuple=True)[0]
        count = share + (remainder if value == present[0] else 0)
        if count:
            picks.append(members[torch.randint(len(members), (count,), generator=generator)])
    return torch.cat(picks)
