"""Hook implementations of the ``deepsad`` plugin.

ahl-plugins imports this module every time it loads plugins, so it must stay
light: no torch here. The factories import :mod:`ahl_plugin_deepsad.model`
when a component is actually built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ahl_plugins import ModelSpec, hookimpl

if TYPE_CHECKING:
    from ahl_plugins import FeatureSpec

NAME = "deepsad"


class DeepSADScorerOptions(BaseModel):
    """Options of the Deep SAD encoder and centre."""

    model_config = ConfigDict(extra="forbid")

    hidden: list[int] = Field(default_factory=lambda: [64, 32], description="widths of the hidden layers of φ")
    rep_dim: int = Field(32, ge=1, description="dimension of the representation φ(x)")
    center_eps: float = Field(
        0.1, ge=0, description="centre coordinates with |c_i| < center_eps are set to ±center_eps"
    )


class DeepSADLossOptions(BaseModel):
    """Options of the Deep SAD loss."""

    model_config = ConfigDict(extra="forbid")

    eta: float = Field(1.0, gt=0, description="weight of the labelled-anomaly (inverse distance) term")
    eps: float = Field(1e-6, gt=0, description="added to the distance before inverting it")


def build_scorer(spec: FeatureSpec, options: DeepSADScorerOptions | None = None) -> Any:
    from ahl_plugin_deepsad.model import DeepSADScorer

    return DeepSADScorer(spec, options or DeepSADScorerOptions())


build_scorer.supported_kinds = ("map", "vector")  # type: ignore[attr-defined]  # the host reads it off the factory


def build_loss(options: DeepSADLossOptions | None = None) -> Any:
    from ahl_plugin_deepsad.model import DeepSADLoss

    options = options or DeepSADLossOptions()
    return DeepSADLoss(eta=options.eta, eps=options.eps)


@hookimpl
def ahl_register_scorers(register: Any) -> None:
    register(
        NAME,
        build_scorer,
        options=DeepSADScorerOptions,
        description="Deep SAD: squared distance of a bias-free encoding to a centre fitted on normals",
    )


@hookimpl
def ahl_register_losses(register: Any) -> None:
    register(
        NAME,
        build_loss,
        options=DeepSADLossOptions,
        description="Deep SAD loss: distance for normals, eta / distance for labelled anomalies (1 and 2)",
    )


@hookimpl
def ahl_register_models(register: Any) -> None:
    register(
        NAME,
        ModelSpec(
            scorer=NAME,
            loss=NAME,
            image_extractor="resnet18",
            vector_extractor="identity",
            description="Deep SAD (Ruff et al., ICLR 2020), from the ahl-plugin-deepsad example package",
        ),
    )
