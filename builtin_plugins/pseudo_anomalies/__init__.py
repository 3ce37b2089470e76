"""Built-in pseudo-anomaly generators (label 2): CutPaste, CutMix, DRAEM; feature swap, shift, local noise, k-NN
extrapolation.

Options live here and the implementations load lazily, so listing plugins
never imports torch. See docs/pseudo_anomalies.md for what each one does.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ahl_plugins.hookspecs import hookimpl


def _check_range(name: str, value: tuple[float, float], low: float, high: float | None) -> None:
    a, b = value
    if not a <= b:
        raise ValueError(f"{name} must be (min, max) with min <= max, got {value}")
    if a < low or (high is not None and b > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must lie in {bound}, got {value}")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatchOptions(_Options):
    """Rectangle sizes of CutPaste and CutMix, as in the CutPaste paper."""

    area: tuple[float, float] = Field((0.02, 0.15), description="patch area as a fraction of the image")
    aspect: tuple[float, float] = Field((0.3, 3.3), description="patch width/height ratio, drawn log-uniformly")

    @model_validator(mode="after")
    def _ranges(self):
        _check_range("area", self.area, 1e-4, 1.0)
        _check_range("aspect", self.aspect, 1e-2, 100.0)
        return self


class CutPasteOptions(PatchOptions):
    brightness: float = Field(0.1, ge=0, le=1, description="colour jitter: brightness factor in 1 ± this")
    contrast: float = Field(0.1, ge=0, le=1, description="colour jitter: contrast factor in 1 ± this")
    saturation: float = Field(0.1, ge=0, le=1, description="colour jitter: saturation factor in 1 ± this")
    hue: float = Field(0.1, ge=0, le=0.5, description="colour jitter: hue shift in ± this (of a full turn)")


class CutMixOptions(PatchOptions):
    pass


class DraemOptions(_Options):
    texture_dir: str | None = Field(
        None, description="folder of texture images (e.g. DTD); default: other training normals from the pool"
    )
    beta_max: float = Field(0.8, gt=0, le=1, description="blend factor beta is drawn from [0, beta_max)")
    perlin_scale: tuple[int, int] = Field(
        (0, 6), description="Perlin grid resolution 2^k per axis, k drawn from [min, max)"
    )
    threshold: float = Field(0.5, gt=-1, lt=1, description="Perlin noise above this becomes the anomaly mask")
    min_mask_fraction: float = Field(0.005, ge=0, lt=0.5, description="redraw masks smaller than this")

    @model_validator(mode="after")
    def _ranges(self):
        low, high = self.perlin_scale
        if not 0 <= low < high <= 10:
            raise ValueError(f"perlin_scale must be (min, max) with 0 <= min < max <= 10, got {self.perlin_scale}")
        return self


class FeatureSwapOptions(_Options):
    fraction: tuple[float, float] = Field(
        (0.1, 0.3), description="share of features replaced by another normal's (at least one)"
    )

    @model_validator(mode="after")
    def _ranges(self):
        _check_range("fraction", self.fraction, 0.0, 1.0)
        return self


class FeatureShiftOptions(_Options):
    fraction: tuple[float, float] = Field((0.1, 0.3), description="share of features moved (at least one)")
    magnitude: tuple[float, float] = Field(
        (2.0, 5.0), description="RMS shift of the moved features, in feature-wise standard deviations"
    )

    @model_validator(mode="after")
    def _ranges(self):
        _check_range("fraction", self.fraction, 0.0, 1.0)
        _check_range("magnitude", self.magnitude, 0.0, None)
        return self


class LocalNoiseOptions(_Options):
    neighbours: int = Field(5, ge=1, description="k: the noise is scaled to the distance to the k-th nearest normal")
    magnitude: tuple[float, float] = Field(
        (1.5, 3.0), description="noise norm as a multiple of that local k-NN distance"
    )

    @model_validator(mode="after")
    def _ranges(self):
        _check_range("magnitude", self.magnitude, 0.0, None)
        return self


class KnnExtrapolateOptions(_Options):
    neighbours: int = Field(5, ge=1, description="k nearest normals whose mean the row is pushed away from")
    step: tuple[float, float] = Field(
        (1.0, 4.0), description="how far past the row, in multiples of its offset from that local mean"
    )

    @model_validator(mode="after")
    def _ranges(self):
        _check_range("step", self.step, 0.0, None)
        return self


def make_cutpaste(options: CutPasteOptions | None = None):
    from builtin_plugins.pseudo_anomalies.images import CutPaste

    return CutPaste(options or CutPasteOptions())


def make_cutmix(options: CutMixOptions | None = None):
    from builtin_plugins.pseudo_anomalies.images import CutMix

    return CutMix(options or CutMixOptions())


def make_draem(options: DraemOptions | None = None):
    from builtin_plugins.pseudo_anomalies.images import Draem

    return Draem(options or DraemOptions())


def make_feature_swap(options: FeatureSwapOptions | None = None):
    from builtin_plugins.pseudo_anomalies.vectors import FeatureSwap

    return FeatureSwap(options or FeatureSwapOptions())


def make_feature_shift(options: FeatureShiftOptions | None = None):
    from builtin_plugins.pseudo_anomalies.vectors import FeatureShift

    return FeatureShift(options or FeatureShiftOptions())


def make_local_noise(options: LocalNoiseOptions | None = None):
    from builtin_plugins.pseudo_anomalies.vectors import LocalNoise

    return LocalNoise(options or LocalNoiseOptions())


def make_knn_extrapolate(options: KnnExtrapolateOptions | None = None):
    from builtin_plugins.pseudo_anomalies.vectors import KnnExtrapolate

    return KnnExtrapolate(options or KnnExtrapolateOptions())


@hookimpl
def ahl_register_pseudo_anomaly_generators(register) -> None:
    register(
        "cutpaste",
        make_cutpaste,
        options=CutPasteOptions,
        description="images: a colour-jittered patch of the same image pasted elsewhere (CutPaste)",
    )
    register(
        "cutmix",
        make_cutmix,
        options=CutMixOptions,
        description="images: a patch of another training normal pasted in (CutMix)",
    )
    register(
        "draem",
        make_draem,
        options=DraemOptions,
        description="images: a texture blended in under a thresholded Perlin-noise mask (DRAEM)",
    )
    register(
        "feature_swap",
        make_feature_swap,
        options=FeatureSwapOptions,
        description="vectors: a random subset of features taken from another normal",
    )
    register(
        "feature_shift",
        make_feature_shift,
        options=FeatureShiftOptions,
        description="vectors: a random subset of features pushed a few standard deviations along a random direction",
    )
    register(
        "local_noise",
        make_local_noise,
        options=LocalNoiseOptions,
        description="vectors: isotropic noise a few local k-NN distances long (just outside the row's neighbourhood)",
    )
    register(
        "knn_extrapolate",
        make_knn_extrapolate,
        options=KnnExtrapolateOptions,
        description="vectors: the row pushed away from the mean of its nearest normals (off the normal manifold)",
    )
