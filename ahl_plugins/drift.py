"""Comparing a batch about to be scored with the model's data profile, and saying what differs.

Each cause is one line of one :class:`~ahl_plugins.errors.DataDriftWarning`, emitted once per batch. The
tests behind each rule (tolerances chosen so held-out training normals stay silent; see docs/maps.md,
"The data profile"):

- read settings: the batch's own 16-bit maximum would pick another bit depth than the training images' did,
  or its images come in Pillow modes (channels) the training images did not;
- raw value range: values outside the training images' raw range, widened by ``RANGE_TOLERANCE`` of it;
- image size: widths or heights outside the training images' span, widened by ``SIZE_TOLERANCE``;
- brightness: the batch's median per-image brightness outside the training images' 5-95 % range;
- score: the batch's median score above the training normals' 95 % quantile plus ``SCORE_SPREADS`` times
  their 50-95 % spread (most of a production batch is normal, so its median is a normal's score).

The two median rules need at least ``MIN_BATCH`` inputs; a smaller batch is compared on the rest only.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ahl_plugins.data.image_stats import BatchStats
from ahl_plugins.data.read_settings import ReadSettings
from ahl_plugins.errors import DataDriftWarning
from ahl_plugins.profile import DataProfile

RANGE_TOLERANCE = 0.05
SIZE_TOLERANCE = 0.10
SCORE_SPREADS = 1.0
MIN_BATCH = 10


@dataclass
class DriftReport:
    """What a batch looked like beside the profile (``comparison``) and the causes of a warning, if any."""

    causes: list[str] = field(default_factory=list)
    comparison: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"drift": bool(self.causes), "causes": list(self.causes), **self.comparison}

    def warn(self, what: str = "this batch", stacklevel: int = 3) -> None:
        """One :class:`DataDriftWarning` listing every cause, one per line (nothing when there is none)."""
        if self.causes:
            lines = "\n".join(f"  - {cause}" for cause in self.causes)
            warnings.warn(
                f"{what} differs from the model's training data ({len(self.causes)} cause(s)):\n{lines}",
                DataDriftWarning,
                stacklevel=stacklevel,
            )


def score_threshold(profile: DataProfile) -> float:
    """The batch median score above which the score rule fires."""
    q50, q95 = profile.scores.q(0.5), profile.scores.q(0.95)
    return q95 + SCORE_SPREADS * max(q95 - q50, 0.0)


def compare_batch(
    profile: DataProfile, scores: np.ndarray, images: BatchStats | None = None, read: ReadSettings | None = None
) -> DriftReport:
    """Compare a scored batch (``scores``; ``images``: its image statistics, read with ``read``) with ``profile``."""
    report = DriftReport()
    scores = np.asarray(scores, dtype=np.float64)
    if images is not None and profile.images is not None and images.n:
        _compare_images(report, profile, images, read)
    _compare_scores(report, profile, scores)
    return report


def _compare_images(report: DriftReport, profile: DataProfile, batch: BatchStats, read: ReadSettings | None) -> None:
    train = profile.images
    assert train is not None
    report.comparison["images"] = {"batch": batch.summary(), "training": train.model_dump(mode="json")}
    causes = report.causes
    if batch.own_depth is not None and train.own_bit_depth is not None and batch.own_depth != train.own_bit_depth:
        depth = read.bit_depth if read is not None and read.bit_depth is not None else 16
        causes.append(
            f"read settings: the batch's own maximum {batch.deep_high:g} would pick {batch.own_depth}-bit reading, "
            f"the training images' picked {train.own_bit_depth}-bit; read at the model's {depth}-bit "
            f"(values above {2**depth - 1} clip)"
        )
    new_modes = sorted(set(batch.modes) - set(train.modes))
    if new_modes:
        causes.append(
            f"channel mode: {sum(batch.modes[m] for m in new_modes)} image(s) in Pillow mode(s) {new_modes}, the "
            f"training images were {sorted(train.modes)}; all are read as RGB"
        )
    low, high = train.raw_range
    slack = RANGE_TOLERANCE * max(high - low, 1.0)
    if batch.low < low - slack or batch.high > high + slack:
        causes.append(
            f"raw value range: this batch's values span {batch.low:g}..{batch.high:g}, outside the training images' "
            f"range {low:g}..{high:g}"
        )
    outside = [
        f"{name} {got[0]}..{got[1]} px (training {span[0]}..{span[1]})"
        for name, got, span in (("widths", batch.widths, train.width), ("heights", batch.heights, train.height))
        if got is not None and _outside(got, span, SIZE_TOLERANCE)
    ]
    if outside:
        causes.append(f"image size: {', '.join(outside)}")
    if batch.n >= MIN_BATCH:
        median = batch.median_mean()
        lo, hi = train.mean_quantiles["0.05"], train.mean_quantiles["0.95"]
        if not lo <= median <= hi:
            causes.append(
                f"brightness: the median image mean is {median:.3f} (of 1, as read), outside the training images' "
                f"5-95% range {lo:.3f}..{hi:.3f}"
            )


def _compare_scores(report: DriftReport, profile: DataProfile, scores: np.ndarray) -> None:
    finite = scores[np.isfinite(scores)]
    threshold = score_threshold(profile)
    median = float(np.median(finite)) if finite.size else math.nan
    report.comparison["scores"] = {
        "n": int(scores.size),
        "median": median,
        "threshold": threshold,
        "training_normals": profile.scores.model_dump(mode="json"),
        "checked": bool(finite.size >= MIN_BATCH),
    }
    if finite.size >= MIN_BATCH and median > threshold:
        q95 = profile.scores.q(0.95)
        report.causes.append(
            f"score: the batch's median score {median:.4g} is above {threshold:.4g} (the training normals' 95% "
            f"quantile {q95:.4g} plus their 50-95% spread): most of the batch scores like anomalies; the camera, "
            "lighting or parts may have changed"
        )


def _outside(got: tuple[int, int], span: tuple[int, int], tolerance: float) -> bool:
    return got[0] < span[0] * (1 - tolerance) or got[1] > span[1] * (1 + tolerance)
