"""Small, correct components of every kind, and a helper that turns them into a plugin.

The contract-kit tests start from these and break one thing at a time, so
each broken component differs from a passing one in exactly one respect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ahl_plugins import (
    FeatureExtractor,
    FeatureSpec,
    GeneralizabilityEstimator,
    ModelSpec,
    PseudoAnomalyGenerator,
    hookimpl,
)
from ahl_plugins.plugins import PluginManager


def pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3)) if x.dim() == 4 else x


class TinyScorer(nn.Module):
    """One linear score per scale on pooled features, averaged."""

    head_names: tuple[str, ...] = ("score",)

    def __init__(self, spec: FeatureSpec, options: Any = None) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(c, 1) for c in spec.channels)

    def scale_scores(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([lin(pool(x)).squeeze(-1) for lin, x in zip(self.linears, features, strict=True)]).mean(
            dim=0
        )

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"score": self.scale_scores(features)}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return heads["score"]

    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        """Nothing to prepare."""


class TwoHeadScorer(TinyScorer):
    """An anomaly head and a normality head; score = anomaly - normal (DRA-like signs)."""

    head_names = ("anomaly", "normal")

    def __init__(self, spec: FeatureSpec, options: Any = None) -> None:
        super().__init__(spec, options)
        self.normal = nn.ModuleList(nn.Linear(c, 1) for c in spec.channels)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        normal = torch.stack([lin(pool(x)).squeeze(-1) for lin, x in zip(self.normal, features, strict=True)]).mean(
            dim=0
        )
        return {"anomaly": self.scale_scores(features), "normal": normal}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return heads["anomaly"] - heads["normal"]


def logistic_loss(heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    score = heads["score"]
    anomalous = (labels != 0).to(score.dtype)
    return (anomalous * F.softplus(-score) + (1 - anomalous) * F.softplus(score)).mean()


def two_head_loss(heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    anomalous = (labels != 0).to(heads["anomaly"].dtype)
    anomaly = anomalous * F.softplus(-heads["anomaly"]) + (1 - anomalous) * F.softplus(heads["anomaly"])
    normal = anomalous * F.softplus(heads["normal"]) + (1 - anomalous) * F.softplus(-heads["normal"])
    return (anomaly + normal).mean()


class VectorIdentity(FeatureExtractor):
    """Vectors pass through, standardised with training statistics (a buffer-free fit)."""

    input_kind = "vector"

    def __init__(self, options: Any = None) -> None:
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    def fit(self, train_inputs: torch.Tensor) -> None:
        self.mean = train_inputs.mean(dim=0)
        self.std = train_inputs.std(dim=0).clamp(min=1e-6)

    @property
    def spec(self) -> FeatureSpec:
        if self.mean is None:
            raise RuntimeError("fit() first")
        return FeatureSpec("vector", (int(self.mean.numel()),))

    def fingerprint(self) -> str:
        stats = "unfitted" if self.mean is None else f"{float(self.mean.sum()):.6f}:{float(self.std.sum()):.6f}"
        return f"vector-identity:{stats}"

    def extract(self, batch: torch.Tensor) -> list[torch.Tensor]:
        return [(batch - self.mean) / self.std]


class TinyConvExtractor(FeatureExtractor):
    """A frozen random conv at two scales (full and half resolution)."""

    input_kind = "image"
    image_size = 32

    def __init__(self, options: Any = None) -> None:
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU()).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec("map", (4, 4))

    def fingerprint(self) -> str:
        return "tiny-conv:" + ",".join(f"{float(p.sum()):.6f}" for p in self.net.parameters())

    def extract(self, batch: torch.Tensor) -> list[torch.Tensor]:
        half = F.interpolate(batch, scale_factor=0.5, mode="bilinear", align_corners=False)
        return [self.net(batch), self.net(half)]


class VectorNoise(PseudoAnomalyGenerator):
    """Adds noise to a random half of the coordinates."""

    domain = "vector"

    def __init__(self, options: Any = None) -> None:
        self.scale = 3.0

    def generate(
        self, x: torch.Tensor, pool: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
        mask[:, 0] = True
        noise = self.scale * torch.randn(x.shape, generator=generator, device=x.device)
        return torch.where(mask, x + noise, x), mask


class ImagePatch(PseudoAnomalyGenerator):
    """Pastes a square from a pool image at a random place."""

    domain = "image"

    def __init__(self, options: Any = None) -> None:
        self.share = 4

    def generate(
        self, x: torch.Tensor, pool: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = x.clone()
        mask = torch.zeros(x.shape[0], 1, *x.shape[2:], dtype=torch.bool, device=x.device)
        size = max(2, x.shape[-1] // self.share)
        for i in range(len(x)):
            top, left = (int(v) for v in torch.randint(0, x.shape[-1] - size, (2,), generator=generator))
            source = pool[int(torch.randint(len(pool), (1,), generator=generator))]
            out[i, :, top : top + size, left : left + size] = 1.0 - source[:, top : top + size, left : left + size]
            mask[i, :, top : top + size, left : left + size] = True
        return out, mask


class SoftmaxEstimator(GeneralizabilityEstimator):
    """Weights = softmax(-error) of the last epoch's weighted squared errors."""

    def __init__(self, n_tasks: int, options: Any = None) -> None:
        self.n_tasks = n_tasks

    def task_weights(self, history: torch.Tensor, targets: torch.Tensor, error_weights: torch.Tensor) -> torch.Tensor:
        errors = (error_weights * (history[-1] - targets[:, None]) ** 2).sum(0) / error_weights.sum(0).clamp(min=1e-8)
        return torch.softmax(-errors, dim=0)


def make_plugin(**registrations: Sequence[tuple[str, Any] | tuple[str, Any, dict[str, Any]]]) -> object:
    """A plugin object implementing the given hooks: ``hook name -> [(name, factory[, register kwargs])]``."""

    def implementation(items: Sequence[tuple]) -> Callable[[Any], None]:
        def register_all(register: Any) -> None:
            for item in items:
                name, factory, *rest = item
                register(name, factory, **(rest[0] if rest else {}))

        return register_all

    namespace = {hook: staticmethod(hookimpl(implementation(items))) for hook, items in registrations.items()}
    return type("TestPlugin", (), namespace)


def bare_manager() -> PluginManager:
    """A manager with no built-ins and no entry points: only what a test registers."""
    return PluginManager(builtins=(), entry_point_group=None, env={}).load()


def good_plugin(**extra: Sequence[tuple]) -> object:
    """Every kind of good component, plus models bundling the scorers and losses."""
    registrations: dict[str, list[tuple]] = {
        "ahl_register_scorers": [("tiny", TinyScorer), ("two_head", TwoHeadScorer)],
        "ahl_register_losses": [
            ("logistic", lambda options=None: logistic_loss),
            ("two_head", lambda options=None: two_head_loss),
        ],
        "ahl_register_feature_extractors": [("vector_identity", VectorIdentity), ("tiny_conv", TinyConvExtractor)],
        "ahl_register_pseudo_anomaly_generators": [("vector_noise", VectorNoise), ("image_patch", ImagePatch)],
        "ahl_register_estimators": [("softmax", SoftmaxEstimator)],
        "ahl_register_models": [
            (
                "tiny",
                ModelSpec(
                    scorer="tiny", loss="logistic", image_extractor="tiny_conv", vector_extractor="vector_identity"
                ),
            ),
            (
                "two_head",
                ModelSpec(
                    scorer="two_head", loss="two_head", image_extractor="tiny_conv", vector_extractor="vector_identity"
                ),
            ),
        ],
    }
    for hook, items in extra.items():
        registrations.setdefault(hook, []).extend(items)
    return make_plugin(**registrations)
