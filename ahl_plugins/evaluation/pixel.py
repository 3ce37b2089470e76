"""Pixel-level metrics for anomaly maps: pixel AUROC and AUPRO.

Both pool the pixels of every test image (normal images contribute only
normal pixels) and sweep one threshold over all of them, higher = more
anomalous; pixels with equal scores share a threshold (ties count half in
the AUROC, as in scikit-learn).

- **Pixel AUROC**: the ROC area over all pixels, each pixel one sample.
- **AUPRO** (Bergmann et al., "The MVTec Anomaly Detection Dataset",
  IJCV 2021): per threshold, the mean over every connected defect region
  (8-connected, in each mask) of the share of the region's pixels above the
  threshold (per-region overlap, so a small defect weighs as much as a large
  one), plotted against the false-positive rate over all normal pixels; the
  area up to FPR 0.3, divided by 0.3, so 1.0 is perfect.

Each exact curve comes from one sort: with every pixel ordered by score,
the false-positive count, true-positive count and overlap are cumulative
sums (an anomalous pixel adds ``1 / (n_regions · |its region|)`` to the mean
overlap), read at the end of each run of equal scores. Per-type curves reuse
the same sort (a subset's order is a subsequence of the full order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ahl_plugins.errors import DataError

FPR_LIMIT = 0.3


def _regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    return labels, int(count)


@dataclass(frozen=True)
class _SortedPixels:
    """Every pixel of every image, ordered by score (highest first)."""

    scores: np.ndarray  # float32
    labels: np.ndarray  # bool, true inside a defect
    inverse_size: np.ndarray  # 1 / |the pixel's defect region|, 0 outside defects
    image: np.ndarray  # index of the pixel's image
    regions_per_image: np.ndarray


def _sorted_pixels(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> _SortedPixels:
    if len(maps) != len(masks):
        raise DataError(f"{len(maps)} anomaly maps but {len(masks)} masks; they must match one to one")
    scores, labels, inverse, image, counts = [], [], [], [], []
    for i, (m, g) in enumerate(zip(maps, masks, strict=True)):
        m, g = np.asarray(m), np.asarray(g).astype(bool)
        if m.shape != g.shape or m.ndim != 2:
            raise DataError(f"image {i}: map of shape {m.shape} but mask of shape {g.shape}; both must be the same H×W")
        if not np.isfinite(m).all():
            raise DataError(f"image {i}: the anomaly map has NaN or infinite values; the model diverged")
        regions, count = _regions(g)
        regions = regions.ravel()
        sizes = np.bincount(regions, minlength=count + 1).astype(np.float32)
        sizes[0] = np.inf  # outside any region: weight 0
        scores.append(m.astype(np.float32).ravel())
        labels.append(g.ravel())
        inverse.append(1.0 / sizes[regions])
        image.append(np.full(regions.size, i, dtype=np.int32))
        counts.append(count)
    if not scores:
        raise DataError("pixel metrics need at least one image")
    flat = np.concatenate(scores)
    order = np.argsort(-flat)  # ties are read together at the end of their run, so their order does not matter
    return _SortedPixels(
        flat[order],
        np.concatenate(labels)[order],
        np.concatenate(inverse)[order],
        np.concatenate(image)[order],
        np.asarray(counts, dtype=np.int64),
    )


def _curves_of(pixels: _SortedPixels, images: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FPR, TPR and per-region overlap at every distinct threshold (from (0, 0, 0)), over all images or
    only ``images``: the sorted order of a subset is the subsequence of the full order, so one sort serves all."""
    scores, labels, inverse = pixels.scores, pixels.labels, pixels.inverse_size
    n_regions = int(pixels.regions_per_image.sum())
    if images is not None:
        member = np.zeros(len(pixels.regions_per_image), dtype=bool)
        member[np.asarray(images, dtype=np.int64)] = True
        keep = member[pixels.image]
        scores, labels, inverse = scores[keep], labels[keep], inverse[keep]
        n_regions = int(pixels.regions_per_image[np.asarray(images, dtype=np.int64)].sum())
    positives = int(labels.sum())
    if positives == 0 or positives == labels.size:
        present = "anomalous" if positives else "normal"
        raise DataError(
            f"pixel metrics need normal and anomalous pixels; the masks hold only {present} pixels "
            "(are the ground-truth masks of the anomalies missing?)"
        )
    ends = np.append(np.flatnonzero(np.diff(scores) != 0), scores.size - 1)
    tp = np.cumsum(labels, dtype=np.int64)[ends]
    fp = (ends + 1) - tp
    pro = np.cumsum(inverse, dtype=np.float64)[ends] / n_regions
    fpr = np.concatenate([[0.0], fp / (labels.size - positives)])
    tpr = np.concatenate([[0.0], tp / positives])
    pro = np.concatenate([[0.0], np.minimum(pro, 1.0)])
    return fpr, tpr, pro


def _curves(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _curves_of(_sorted_pixels(maps, masks))


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _aupro(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float) -> float:
    keep = fpr <= fpr_limit
    x, y = fpr[keep], pro[keep]
    if x[-1] < fpr_limit:  # interpolate the overlap where the curve crosses the limit
        nxt = int(np.argmax(~keep))
        x0, x1, y0, y1 = fpr[nxt - 1], fpr[nxt], pro[nxt - 1], pro[nxt]
        y_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        x, y = np.append(x, fpr_limit), np.append(y, y_limit)
    return _area(x, y) / fpr_limit


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Area under the pixel-level ROC curve over all images' pixels."""
    fpr, tpr, _ = _curves(maps, masks)
    return _area(fpr, tpr)


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = FPR_LIMIT) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (MVTec AD's AUPRO)."""
    if not 0 < fpr_limit <= 1:
        raise DataError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    fpr, _, pro = _curves(maps, masks)
    return _aupro(fpr, pro, fpr_limit)


def pixel_metrics(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], fpr_limit: float = FPR_LIMIT
) -> dict[str, float]:
    """``{"pixel_auroc": ..., "pixel_aupro": ...}`` from one sort."""
    fpr, tpr, pro = _curves(maps, masks)
    return {"pixel_auroc": _area(fpr, tpr), "pixel_aupro": _aupro(fpr, pro, fpr_limit)}


def pixel_metrics_by_type(
    maps: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None],
    types: Sequence[str],
    normal_type: str = "normal",
) -> dict[str, dict[str, float]]:
    """Pixel metrics over all images (key ``"all"``) and per anomaly type (that type's images plus
    every normal image). Anomalies without a mask (``None``) are left out: their pixels have no truth."""
    types = [str(t) for t in types]
    usable = [i for i, (g, t) in enumerate(zip(masks, types, strict=True)) if g is not None or t == normal_type]

    filled = [g if (g := masks[i]) is not None else np.zeros(np.asarray(maps[i]).shape, dtype=bool) for i in usable]
    pixels = _sorted_pixels([maps[i] for i in usable], filled)
    kinds = [types[i] for i in usable]

    def on(images: list[int] | None) -> dict[str, float]:
        fpr, tpr, pro = _curves_of(pixels, images)
        return {"pixel_auroc": _area(fpr, tpr), "pixel_aupro": _aupro(fpr, pro, FPR_LIMIT)}

    out = {"all": on(None)}
    for kind in sorted(set(kinds) - {normal_type}):
        out[kind] = on([j for j, t in enumerate(kinds) if t in (kind, normal_type)])
    return out


#: Metrics are computed on maps shrunk to at most this many pixels on the longer side (masks
#: resized to match, nearest neighbour): exact for the curves, and bounded memory on large images.
METRIC_MAX_SIDE = 256


def evaluate_maps(
    maps: Iterable[np.ndarray], mask_paths: Sequence[str | Path | None], types: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Pixel metrics by type (see :func:`pixel_metrics_by_type`) for maps that arrive one by one;
    each image's mask file is read at its map's size (``None``: a normal image, or an anomaly without a mask)."""
    from ahl_plugins.data.masks import load_mask

    kept_maps: list[np.ndarray] = []
    kept_masks: list[np.ndarray | None] = []
    for anomaly_map, mask_path in zip(maps, mask_paths, strict=True):
        kept_maps.append(np.asarray(anomaly_map, dtype=np.float32))
        kept_masks.append(None if mask_path is None else load_mask(mask_path, kept_maps[-1].shape))
    if len(kept_maps) != len(mask_paths):
        raise DataError(f"{len(kept_maps)} anomaly maps for {len(mask_paths)} images; they must match one to one")
    return pixel_metrics_by_type(kept_maps, kept_masks, types)


def detector_pixel_metrics(
    detector: Any,
    inputs: Any,
    mask_paths: Sequence[str | Path | None] | None,
    types: Sequence[str] | np.ndarray,
    sigma: float = 0.0,
) -> dict[str, dict[str, float]] | None:
    """Pixel metrics of a fitted detector on ``inputs`` (maps at :data:`METRIC_MAX_SIDE`), or ``None`` when
    they do not apply: no masks, vector features, a scorer without maps, or no masked anomaly."""
    from ahl_plugins.maps import has_maps

    if mask_paths is None or all(m is None for m in mask_paths) or isinstance(inputs, np.ndarray):
        return None
    if detector.fit_info_.get("feature_spec", {}).get("kind") != "map" or not has_maps(detector.scorer_):
        return None
    maps = detector.iter_anomaly_maps(inputs, sigma=sigma, max_side=METRIC_MAX_SIDE)
    return evaluate_maps(maps, list(mask_paths), [str(t) for t in types])


@dataclass(frozen=True)
class PixelTable:
    """Per anomaly type: image AUROC beside pixel AUROC and AUPRO (``rows``), under ``title``; no rows when the
    title says why there are no pixel metrics."""

    title: str
    rows: list[list[str]]


def pixel_table_by_type(
    detector: Any, dataset: Any, rows: Sequence[int], scores: np.ndarray, sigma: float
) -> PixelTable | None:
    """What ``ahl score`` prints for data with masks (a type = its images + all normals); None without masks."""
    from ahl_plugins.evaluation.metrics import auc_roc
    from ahl_plugins.maps import has_maps

    rows = list(rows)
    labels, types = dataset.labels[rows], dataset.types[rows]
    if dataset.masks is None or not (0 < labels.sum() < len(labels)):
        return None
    if detector.fit_info_["feature_spec"]["kind"] == "map" and not has_maps(detector.scorer_):
        return PixelTable(
            f"no pixel metrics: the scorer of model {detector.config.model!r} does not produce anomaly maps", []
        )
    masks = [dataset.masks[i] for i in rows]
    pixel = detector_pixel_metrics(detector, dataset.select_inputs(rows), masks, [str(t) for t in types], sigma)
    if pixel is None:
        return None
    table = []
    for kind, values in pixel.items():
        chosen = np.ones(len(labels), dtype=bool) if kind == "all" else (labels == 0) | (types == kind)
        image = auc_roc(labels[chosen], scores[chosen])
        table.append([kind, f"{image:.3f}", f"{values['pixel_auroc']:.3f}", f"{values['pixel_aupro']:.3f}"])
    smoothing = f", maps smoothed with sigma {sigma:g} px" if sigma else ""
    return PixelTable(
        f"pixel metrics (type = its images + all normals; maps at <= {METRIC_MAX_SIDE} px{smoothing}):", table
    )
