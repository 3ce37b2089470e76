"""A model's data profile: how its training inputs were read and what they looked like, saved with the model.

Scoring reads every new image with the profile's read settings (never the new batch's own bit depth), and
:mod:`ahl_plugins.drift` compares each batch with the profile. Written as ``profile.json`` beside the
weights; a model saved before profiles has none (it then reads inputs as the batch's own settings say, as
it always did, and no drift is checked).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ahl_plugins.data.image_stats import BatchStats
from ahl_plugins.data.read_settings import ReadSettings
from ahl_plugins.errors import ModelFileError

PROFILE_VERSION = 1
#: Quantiles of the training normals' scores a profile keeps.
SCORE_QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)


class ImageProfile(BaseModel):
    """The training images (normals and labelled anomalies): sizes, Pillow modes, raw values, brightness."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=1)
    width: tuple[int, int]
    height: tuple[int, int]
    modes: dict[str, int]
    raw_range: tuple[float, float]
    own_bit_depth: int | None = Field(
        None, description="the depth the training images' own maximum picks (None: no 16-bit images)"
    )
    mean_quantiles: dict[str, float] = Field(description="quantiles of the per-image mean of the [0, 1] image")


class ScoreProfile(BaseModel):
    """The training normals' anomaly scores (in-sample, from the fitted model)."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(ge=1)
    quantiles: dict[str, float]

    def q(self, level: float) -> float:
        return self.quantiles[f"{level:g}"]


class DataProfile(BaseModel):
    """Everything a new batch is compared with. ``read``: the read settings (images); ``encoder``: whether
    raw tables go through the model's own encoder (kept in ``encoder.json``)."""

    model_config = ConfigDict(extra="forbid")

    version: int = PROFILE_VERSION
    input_kind: Literal["image", "vector"]
    read: dict[str, Any] | None = None
    images: ImageProfile | None = None
    input_dim: int | None = None
    encoder: bool = False
    scores: ScoreProfile

    def read_settings(self) -> ReadSettings | None:
        return None if self.read is None else ReadSettings.from_dict(self.read)


def build_profile(
    kind: Literal["image", "vector"],
    read: ReadSettings | None,
    images: BatchStats | None,
    normal_scores: np.ndarray,
    input_dim: int | None,
    encoder: bool,
) -> DataProfile:
    """The profile of a fit: ``images`` summed over the training images, ``normal_scores`` of its normals."""
    scores = np.asarray(normal_scores, dtype=np.float64)
    image_profile = None
    if images is not None and images.n:
        summary = images.summary()
        image_profile = ImageProfile(
            n=summary["n"],
            width=tuple(summary["width"]),
            height=tuple(summary["height"]),
            modes=summary["modes"],
            raw_range=tuple(summary["raw_range"]),
            own_bit_depth=summary["own_bit_depth"],
            mean_quantiles=summary["mean_quantiles"],
        )
    return DataProfile(
        input_kind=kind,
        read=None if read is None else read.to_dict(),
        images=image_profile,
        input_dim=input_dim,
        encoder=encoder,
        scores=ScoreProfile(
            n=len(scores), quantiles={f"{q:g}": float(np.quantile(scores, q)) for q in SCORE_QUANTILES}
        ),
    )


def profile_from_json(document: Any, where: str) -> DataProfile:
    """A saved ``profile.json``; a damaged one is a :class:`ModelFileError` naming it."""
    try:
        profile = DataProfile.model_validate(document)
        profile.read_settings()
    except (ValidationError, ValueError) as exc:
        raise ModelFileError(f"{where} is not a valid data profile ({exc}); restore it from a copy or re-fit") from None
    return profile
