"""The deviation loss of DevNet (Pang et al., KDD 2019), as a pure function of the scores.

``dev(x) = (s(x) - mu_R) / sigma_R`` where ``mu_R`` and ``sigma_R`` are the mean
and standard deviation of reference scores drawn from N(0, 1); the loss is
``(1 - y) |dev| + y max(0, margin - dev)``: normals are pulled to the centre of
the reference distribution, anomalies pushed at least ``margin`` standard
deviations above it.

Deliberate deviation from the papers: they draw fresh references on every
call. We draw them once, at construction, from a generator seeded with
``reference_seed`` and keep them as constants. The expectation of the loss is
the same, but the loss is now a pure function of (scores, labels), which the
AHL meta-gradients need and which makes training reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from ahl_plugins.contracts import LABEL_NORMAL
from ahl_plugins.errors import InvalidComponentError


def draw_references(n_references: int, seed: int) -> torch.Tensor:
    """The ``n_references`` reference scores from N(0, 1), the same for the same seed."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(int(n_references), generator=generator, dtype=torch.float64)


class Deviation:
    """The per-sample deviation loss with fixed reference statistics.

    ``sigma_R`` is the population standard deviation of the references (as
    ``K.std`` in the original Keras DevNet). Both statistics are plain floats,
    so the loss follows the scores to any device and dtype.
    """

    def __init__(self, margin: float = 5.0, n_references: int = 5000, reference_seed: int = 0) -> None:
        if n_references < 2:
            raise ValueError(f"n_references must be at least 2 to have a spread, got {n_references}")
        references = draw_references(n_references, reference_seed)
        self.margin = float(margin)
        self.n_references = int(n_references)
        self.reference_seed = int(reference_seed)
        self.mu = float(references.mean())
        self.sigma = float(references.std(unbiased=False))

    def deviation(self, scores: torch.Tensor) -> torch.Tensor:
        return (scores - self.mu) / self.sigma

    def per_sample(self, scores: torch.Tensor, anomalous: torch.Tensor) -> torch.Tensor:
        """Loss of each sample; ``anomalous`` is a bool (or 0/1) tensor of the same shape."""
        dev = self.deviation(scores)
        y = anomalous.to(dev.dtype)
        return (1.0 - y) * dev.abs() + y * torch.clamp(self.margin - dev, min=0.0)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` holds; zero (with zero gradient) when it holds nowhere.

    ``torch.where`` rather than multiplication, so a non-finite value outside
    the mask cannot leak in as NaN.
    """
    picked = torch.where(mask, values, torch.zeros_like(values))
    count = mask.sum().to(values.dtype).clamp(min=1.0)
    return picked.sum() / count


def require_heads(heads: Mapping[str, torch.Tensor], names: Iterable[str], loss_name: str) -> None:
    missing = [name for name in names if name not in heads]
    if missing:
        raise InvalidComponentError(
            f"loss {loss_name!r} needs head score(s) {missing}, but the scorer produced {sorted(heads)}; "
            "pair the loss with a scorer that has these heads (see `ahl plugins list`)"
        )


class DeviationLoss:
    """``loss(heads, labels)``: mean deviation loss, summed over the chosen heads.

    Every non-normal label (seen anomaly 1, pseudo anomaly 2) counts as an
    anomaly, as DevNet trains on pseudo anomalies when it is given them.
    ``heads=None`` uses every head the scorer returns (DevNet has one, ``score``).
    """

    def __init__(
        self,
        margin: float = 5.0,
        n_references: int = 5000,
        reference_seed: int = 0,
        heads: Iterable[str] | None = None,
    ) -> None:
        self.deviation = Deviation(margin, n_references, reference_seed)
        self.heads = None if heads is None else tuple(heads)

    def __call__(self, heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        names = tuple(heads) if self.heads is None else self.heads
        require_heads(heads, names, "deviation")
        anomalous = labels != LABEL_NORMAL
        total = None
        for name in names:
            term = self.deviation.per_sample(heads[name], anomalous).mean()
            total = term if total is None else total + term
        if total is None:
            raise InvalidComponentError("loss 'deviation' got no head scores to train")
        return total
