"""Built-in plugin: DRA (scorer ``dra``, loss ``dra`` and model ``dra``).

Light module: the scorer, the loss and torch are imported only when built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ahl_plugins.contracts import ModelSpec
from ahl_plugins.hookspecs import hookimpl
from builtin_plugins.losses import DeviationReferenceOptions

if TYPE_CHECKING:
    from ahl_plugins.contracts import FeatureSpec, Register


class DRAOptions(BaseModel):
    """Options of the DRA scorer."""

    model_config = ConfigDict(extra="forbid")

    topk_ratio: float = Field(0.1, gt=0, le=1, description="share of map positions pooled by the MIL heads (maps)")
    n_references: int = Field(5, ge=1, description="training normals averaged into the residual head's reference")
    normal_hidden: int = Field(256, ge=1, description="hidden units of the normality head's FC layer (maps)")
    hidden: int = Field(64, ge=1, description="hidden units of each MLP head (vectors)")
    vector_head_output: Literal["abs", "linear"] = Field(
        "abs",
        description="MLP heads on vectors end in |.| like the map heads (abs) or stay linear (linear: the earlier form)",
    )
    head_calibration: bool = Field(
        True,
        description="before combining, put each head on the scale of the training normals (median 0, robust "
        "spread 1), so no head dominates the score by its range alone; False: the paper's raw sum",
    )
    residual_reference: Literal["nearest", "random_mean"] = Field(
        "nearest",
        description="what the residual head compares a sample with: nearest (the mean of its n_neighbors nearest "
        "training normals, itself excluded) | random_mean (the paper: the mean of n_references random normals)",
    )
    n_neighbors: int = Field(5, ge=1, description="nearest training normals averaged into the residual reference")
    distance_head: bool = Field(
        True,
        description="add a parameter-free fifth head, the residual's length (the label-free k-NN signal: how far the "
        "sample is from its nearest training normals), calibrated and summed with the others",
    )
    distance_form: Literal["pooled", "patch"] = Field(
        "patch",
        description="the distance head on maps: patch (per position, the distance to the nearest normal patch of a "
        "coreset memory of the training normals' patches, the sample's own patches left out; PatchCore's signal; "
        "chosen on validation, docs/deviations.md) | pooled (the residual's length to the mean of the n_neighbors "
        "nearest whole maps: the default until 2026-12-03, faster), top-k pooled",
    )
    patch_memory_fraction: float = Field(
        0.1, gt=0, le=1, description="share of the training normals' patches the patch memory keeps (greedy coreset)"
    )
    distance_pooling: Literal["topk", "max"] = Field(
        "topk",
        description="how the patch distance head pools its map into an image score: topk (the mean of the top "
        "topk_ratio positions, as the MIL heads pool) | max (the farthest position, as PatchCore scores)",
    )
    combine: Literal["sum", "confident"] = Field(
        "sum",
        description="how the heads make the anomaly score: sum (the paper: seen + pseudo + residual - normal, plus the "
        "distance head, each calibrated) | confident (the distance head, plus each of seen, pseudo and residual only "
        "by how far it exceeds confident_spreads spreads of the training normals; normality left out): the "
        "label-free ranking stands unless a labelled head is sure (docs/labels_on_images.md)",
    )
    confident_spreads: float = Field(
        3.0,
        gt=0,
        description="with combine=confident: how many calibrated spreads a labelled head must exceed to count",
    )
    vector_residual: Literal["abs", "signed"] = Field(
        "abs",
        description="what the residual MLP reads on vectors: abs (|reference - x| per feature, so one linear layer "
        "already measures a weighted distance) | signed (reference - x, the paper's form)",
    )
    score_normality: bool = Field(
        True,
        description="subtract the holistic normality head in the anomaly score (the paper); False: the head is "
        "still trained with the others but left out of the score",
    )
    reference_bank_size: int = Field(
        4096,
        ge=1,
        description="training normals kept for the nearest-normal search (a seeded subsample beyond that); maps "
        "keep at most 256 because each is a whole feature map",
    )

    @model_validator(mode="after")
    def _confident_needs_calibrated_distance(self) -> DRAOptions:
        if self.combine == "confident" and not (self.distance_head and self.head_calibration):
            raise ValueError(
                "combine='confident' adds the labelled heads to the distance head in units of calibrated spreads: "
                "keep distance_head=True and head_calibration=True, or use combine='sum'"
            )
        return self


class DRALossOptions(DeviationReferenceOptions):
    """Options of the DRA loss (the deviation loss per head)."""


def build_scorer(spec: FeatureSpec, options: DRAOptions | None = None) -> Any:
    from builtin_plugins.dra.scorer import DRAScorer

    return DRAScorer(spec, options)


def build_loss(options: DRALossOptions | None = None) -> Any:
    from builtin_plugins.dra.loss import DRALoss

    options = options or DRALossOptions()
    return DRALoss(options.margin, options.n_references, options.reference_seed)


@hookimpl
def ahl_register_scorers(register: Register) -> None:
    register(
        "dra",
        build_scorer,
        options=DRAOptions,
        description="DRA: normality, seen, pseudo and latent-residual heads; score = seen + pseudo + residual - normal",
    )


@hookimpl
def ahl_register_losses(register: Register) -> None:
    register(
        "dra",
        build_loss,
        options=DRALossOptions,
        description="DRA: deviation loss per head on its own samples (seen head without pseudo, pseudo without seen)",
    )


@hookimpl
def ahl_register_models(register: Register) -> None:
    register(
        "dra",
        ModelSpec(
            scorer="dra",
            loss="dra",
            image_extractor="resnet18",
            vector_extractor="identity",
            # DRA's heads differ in size by orders of magnitude (a 3×3 C×C residual conv beside 1×1 heads), so
            # AHL's inner step moves each tensor by its own share of its norm; the one global share moved the
            # small heads by many times their norm (docs/deviations.md; validation: ahl_layerwise).
            train_options={"inner_update": "layerwise"},
            description="DRA (Ding et al. 2022): disentangled seen, pseudo and residual abnormality heads",
        ),
    )
