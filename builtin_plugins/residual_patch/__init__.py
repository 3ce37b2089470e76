"""Built-in plugin: the residual patch model (scorer, loss and model ``residual_patch``).

A label-free patch memory of the training normals decides the floor of every image's score; what the labelled
anomalies teach (where defects are, and what a defect's distance map looks like) can only add to it, so labels of
one defect type cannot pull an unseen type below the label-free ranking (docs/models.md).

Light module: the scorer, the loss and torch are imported only when built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ahl_plugins.contracts import ModelSpec
from ahl_plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from ahl_plugins.contracts import FeatureSpec, Register

ImageScore = Literal["floor", "floor_evidence", "floor_statistics", "floor_both", "statistics", "evidence"]
FloorForm = Literal["patch", "pooled_knn"]


class ResidualPatchOptions(BaseModel):
    """Options of the residual patch scorer."""

    model_config = ConfigDict(extra="forbid")

    image_score: ImageScore = Field(
        "floor_evidence",
        description="how the heads make the image score: floor (the calibrated label-free max-patch distance alone) "
        "| floor_evidence / floor_statistics / floor_both (the floor plus the non-negative part of the calibrated "
        "learned term(s) beyond evidence_offset spreads: labels add evidence, never subtract) | statistics / "
        "evidence (the learned term alone, no floor; for validation). Chosen on validation, docs/deviations.md",
    )
    floor: FloorForm = Field(
        "patch",
        description="which label-free score is the image floor: patch (the PatchCore-class max nearest-normal-patch "
        "distance, calibrated per scale and averaged) | pooled_knn (the mean distance of the image's pooled features "
        "to its floor_k nearest training normals, the results' k-NN reference, for data where squashed or "
        "position-free images defeat the patch memory). Chosen per data set on validation "
        "(docs/benchmarks/image_references.md: patch on Magnetic Tile and ELPV); the maps are the patch distances "
        "either way",
    )
    floor_k: int = Field(5, ge=1, description="neighbours of the pooled_knn floor (their mean distance)")
    evidence_offset: float = Field(
        2.0,
        ge=0,
        description="spreads of the training normals a learned term must exceed before it adds to the floor (the "
        "heads were trained on those normals, so new normals spread wider; chosen on validation)",
    )
    evidence_weight: float = Field(1.0, gt=0, description="weight of the learned term(s) added to the floor")
    topk_ratio: float = Field(0.1, gt=0, le=1, description="share of positions the evidence head's MIL pools")
    hidden: int = Field(32, ge=1, description="hidden channels of the per-position evidence head")
    kernel_size: Literal[1, 3] = Field(1, description="the evidence head's first conv: 1×1 or 3×3 positions")
    patch_memory_fraction: float = Field(
        0.1, gt=0, le=1, description="share of the training normals' patches the memory keeps (greedy coreset)"
    )
    calibration_normals: int = Field(
        512,
        ge=2,
        description="training normals (a seeded subsample beyond that) whose leave-own-image-out distance maps set "
        "the statistics' standardisation, the share-above thresholds and the residuals' unit",
    )
    floor_calibration_normals: int = Field(
        64,
        ge=2,
        description="training normals (the first of the same seeded permutation) whose leave-own-image-out max "
        "distances calibrate the floor: 64, as the PatchCore-class reference (PatchCoreOptions.calibration_images), "
        "so the floor is that reference's score under the same seed",
    )


class ResidualPatchLossOptions(BaseModel):
    """Options of the residual patch loss."""

    model_config = ConfigDict(extra="forbid")

    statistics_pseudo: bool = Field(
        True,
        description="train the map-statistics classifier on pseudo anomalies too (False: normals and the labelled "
        "anomalies only, as SegAD); the evidence head always sees both",
    )
    evidence_weight: float = Field(1.0, ge=0, description="weight of the evidence head's MIL term")
    statistics_weight: float = Field(1.0, ge=0, description="weight of the statistics classifier's term")
    position_weight: float = Field(
        0.0,
        ge=0,
        description="weight of the per-position term: the evidence head supervised at each position by the labelled "
        "anomalies' ground-truth masks and the pseudo anomalies' masks (normals: clean everywhere), besides its "
        "top-k MIL from image labels. 0 (default): no per-position labels, as before (docs/plugins.md)",
    )


def build_scorer(spec: FeatureSpec, options: ResidualPatchOptions | None = None) -> Any:
    from builtin_plugins.residual_patch.scorer import ResidualPatchScorer

    return ResidualPatchScorer(spec, options)


build_scorer.supported_kinds = ("map",)  # type: ignore[attr-defined]


def build_loss(options: ResidualPatchLossOptions | None = None) -> Any:
    from builtin_plugins.residual_patch.loss import ResidualPatchLoss

    options = options or ResidualPatchLossOptions()
    return ResidualPatchLoss(
        options.statistics_pseudo, options.evidence_weight, options.statistics_weight, options.position_weight
    )


@hookimpl
def ahl_register_scorers(register: Register) -> None:
    register(
        "residual_patch",
        build_scorer,
        options=ResidualPatchOptions,
        description="residual patch model: calibrated nearest-normal-patch floor + learned per-position evidence "
        "and map-statistics classifier (feature maps only)",
    )


@hookimpl
def ahl_register_losses(register: Register) -> None:
    register(
        "residual_patch",
        build_loss,
        options=ResidualPatchLossOptions,
        description="residual patch model: top-k MIL cross-entropy for the evidence head, cross-entropy for the "
        "map-statistics classifier",
    )


@hookimpl
def ahl_register_models(register: Register) -> None:
    register(
        "residual_patch",
        ModelSpec(
            scorer="residual_patch",
            loss="residual_patch",
            image_extractor="efficientnet_lite0",
            vector_extractor="identity",
            # the heads are small and read fixed inputs (residuals, map statistics), but every batch searches the
            # patch memory at each position: 50 steps at a higher rate than DRA's 20 × 10 at 2e-4 (the configuration
            # validated in docs/benchmarks/residual_patch_validation.md)
            train_options={"epochs": 10, "batches_per_epoch": 5, "lr": 5e-3},
            description="residual patch model (PRN/SegAD-class): label-free patch-memory floor plus what the "
            "labels add",
        ),
    )
