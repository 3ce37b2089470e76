"""Small scorers, a deviation-style loss and synthetic features for the AHL tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ahl_plugins.contracts import LABEL_NORMAL, FeatureSpec
from ahl_plugins.features.store import Features
from ahl_plugins.training.data import TrainingData


class VectorScorer(nn.Module):
    """One MLP per scale over ``B×D`` vectors, scale scores averaged: a minimal Scorer."""

    head_names = ("score",)

    def __init__(self, spec: FeatureSpec, hidden: int = 8) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, hidden), nn.ReLU(), nn.Linear(hidden, 1)) for c in spec.channels
        )

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        scores = [mlp(x).squeeze(-1) for mlp, x in zip(self.mlps, features, strict=True)]
        return {"score": torch.stack(scores).mean(dim=0)}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return heads["score"]

    def prepare(self, normal_features, generator) -> None:
        pass


class MapScorer(nn.Module):
    """1×1 conv per scale, |·|, mean of the top 25% positions, scales averaged (DevNet-like)."""

    head_names = ("score",)

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1) for c in spec.channels)
        self.register_buffer("offset", torch.zeros(()))

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        scores = []
        for conv, x in zip(self.convs, features, strict=True):
            per_position = conv(x).flatten(1).abs()
            k = max(1, per_position.shape[1] // 4)
            scores.append(torch.topk(per_position, k, dim=1).values.mean(dim=1))
        return {"score": torch.stack(scores).mean(dim=0) + self.offset}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return heads["score"]

    def prepare(self, normal_features, generator) -> None:
        self.offset.zero_()


class ItemScorer(VectorScorer):
    """Calls ``.item()`` in forward: cannot run under vmap, so AHL must fall back to its loop."""

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().forward(features)
        if out["score"].abs().max().item() > 1e12:  # data-dependent Python branch
            raise RuntimeError("unreachable")
        return out


def deviation_loss(heads: Mapping[str, torch.Tensor], labels: torch.Tensor, margin: float = 5.0) -> torch.Tensor:
    """DevNet's loss with a N(0, 1) reference (μ = 0, σ = 1): pure, differentiable."""
    s = heads["score"]
    y = (labels != LABEL_NORMAL).to(s.dtype)
    return ((1 - y) * s.abs() + y * torch.clamp(margin - s, min=0.0)).mean()


def blobs(n: int, dim: int, centres: np.ndarray, rng: np.random.Generator, scale: float = 0.3) -> np.ndarray:
    labels = np.arange(n) % len(centres)
    return centres[labels] + scale * rng.standard_normal((n, dim))


def vector_data(
    *,
    n_normals: int = 60,
    dim: int = 6,
    n_seen: int = 6,
    pools: Mapping[str, int] | None = None,
    scales: int = 1,
    seed: int = 0,
) -> TrainingData:
    """Normals in three well separated blobs; seen anomalies shifted one way, each pseudo pool another."""
    rng = np.random.default_rng(seed)
    pools = {"left": 20, "right": 20} if pools is None else pools
    centres = np.zeros((3, dim))
    centres[0, 0], centres[1, 1], centres[2, 2] = 6.0, 6.0, 6.0
    normals = blobs(n_normals, dim, centres, rng)
    seen = blobs(n_seen, dim, centres, rng) + 3.0 * np.eye(dim)[3 % dim]
    pseudo = {
        name: blobs(size, dim, centres, rng) + 3.0 * np.eye(dim)[(4 + i) % dim]
        for i, (name, size) in enumerate(pools.items())
    }

    def feats(a: np.ndarray) -> Features:
        t = torch.as_tensor(a, dtype=torch.float32)
        return Features(tuple(t * (1.0 + 0.5 * s) for s in range(scales)))

    return TrainingData(feats(normals), feats(seen), {k: feats(v) for k, v in pseudo.items()})


def map_data(*, n_normals: int = 36, channels: int = 4, n_seen: int = 4, seed: int = 0) -> TrainingData:
    """Two scales of small maps (4×4 and 2×2); anomalies carry a bright patch in one channel."""
    g = torch.Generator().manual_seed(seed)
    modes = torch.zeros(3, channels, 1, 1)
    for m in range(3):
        modes[m, m % channels] = 3.0

    def make(n: int, bump_channel: int | None) -> Features:
        base = modes[torch.arange(n) % 3] + 0.3 * torch.randn(n, channels, 4, 4, generator=g)
        if bump_channel is not None:
            base[:, bump_channel, :2, :2] += 4.0
        small = torch.nn.functional.avg_pool2d(base, 2)
        return Features((base, small))

    return TrainingData(make(n_normals, None), make(n_seen, 3), {"patch": make(12, 2), "stripe": make(12, 1)})


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels.numpy(), scores.detach().numpy()))


def thyroid_hard_setting(path, seed: int, n_seen: int = 10, n_pseudo: int = 256):
    """ann_thyroid, hard setting: normal class 3, seen = ``n_seen`` of class 2, test = test normals + class 1.

    Loaded directly with numpy/gzip and standardised with the training normals'
    statistics; pseudo pools from the registered vector generators. Returns
    ``(TrainingData, test_features, test_labels)``.
    """
    import gzip

    from ahl_plugins.plugins import get_manager

    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter="\t", skiprows=1)
    x, y = table[:, :-1], table[:, -1].astype(int)
    rng = np.random.default_rng(seed)
    normals = rng.permutation(np.flatnonzero(y == 3))
    cut = int(0.75 * normals.size)
    train, test_normals = normals[:cut], normals[cut:]
    seen = rng.choice(np.flatnonzero(y == 2), n_seen, replace=False)
    unseen = np.flatnonzero(y == 1)
    mean, std = x[train].mean(0), x[train].std(0) + 1e-6
    z = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    pool = z[train]
    manager = get_manager()
    pseudo = {}
    for i, name in enumerate(("feature_swap", "feature_shift")):
        entry = manager.get("pseudo_anomaly_generators", name)
        generator = entry.factory(entry.parse_options({}))
        g = torch.Generator().manual_seed(seed * 10 + i)
        base = pool[torch.randint(len(pool), (n_pseudo,), generator=g)]
        pseudo[name] = Features((generator.generate(base, pool, g)[0],))
    data = TrainingData(Features((pool,)), Features((z[seen],)), pseudo)
    test_rows = np.concatenate([test_normals, unseen])
    test_labels = torch.cat([torch.zeros(test_normals.size), torch.ones(unseen.size)])
    return data, Features((z[test_rows],)), test_labels


def train_ahl(scorer, loss, data, options=None, *, seed, estimator=None, **kwargs):
    """``ahl_plugins.ahl.train_ahl`` with the registered estimator that options name, as the detector passes it."""
    from ahl_plugins.ahl import AHLOptions
    from ahl_plugins.ahl import train_ahl as train
    from ahl_plugins.components import build_estimator
    from ahl_plugins.plugins import get_manager

    if estimator is None:

        def estimator(n_tasks: int):
            parsed = options if isinstance(options, AHLOptions) else AHLOptions(**dict(options or {}))
            return build_estimator(get_manager(), parsed, n_tasks, seed)

    return train(scorer, loss, data, options, seed=seed, estimator=estimator, **kwargs)
