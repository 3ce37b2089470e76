"""The map side of ``ahl score``: ``--maps DIR`` and pixel metrics when the data have masks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def write_maps(detector: Any, dataset: Any, rows: Sequence[int], scores: np.ndarray, directory: Path, sigma: float) -> Path:
    """Overlays, raw maps and ``index.html`` for the scored rows (see ``evaluation.overlays``)."""
    from ahl_plugins.evaluation.overlays import MapEntry, write_map_report

    masks = dataset.masks or [None] * len(dataset)
    entries = [
        MapEntry(
            image=dataset.inputs[i],
            sample_id=dataset.ids[i],
            score=float(s),
            label=int(dataset.labels[i]),
            kind=str(dataset.types[i]),
            mask=masks[i],
        )
        for i, s in zip(rows, scores)
    ]
    maps = detector.iter_anomaly_maps(dataset.select_inputs(list(rows)), sigma=sigma)
    return write_map_report(directory, entries, maps, title=f"Anomaly maps: {dataset.name}")


def pixel_lines(detector: Any, dataset: Any, rows: Sequence[int], scores: np.ndarray, sigma: float) -> list[str]:
    """Per anomaly type: image AUROC beside pixel AUROC and AUPRO, as printable lines ([] without masks or maps)."""
    from ahl_plugins.evaluation.metrics import auc_roc
    from ahl_plugins.evaluation.pixel import METRIC_MAX_SIDE, detector_pixel_metrics
    from ahl_plugins.evaluation.report import render
    from ahl_plugins.maps import has_maps

    rows = list(rows)
    labels, types = dataset.labels[rows], dataset.types[rows]
    if dataset.masks is None or not (0 < labels.sum() < len(labels)):
        return []
    if detector.fit_info_["feature_spec"]["kind"] == "map" and not has_maps(detector.scorer_):
        return [f"no pixel metrics: the scorer of model {detector.config.model!r} does not produce anomaly maps"]
    masks = [dataset.masks[i] for i in rows]
    pixel = detector_pixel_metrics(detector, dataset.select_inputs(rows), masks, [str(t) for t in types], sigma)
    if pixel is None:
        return []
    table = []
    for kind, values in pixel.items():
        chosen = np.ones(len(labels), dtype=bool) if kind == "all" else (labels == 0) | (types == kind)
        image = auc_roc(labels[chosen], scores[chosen])
        table.append([kind, f"{image:.3f}", f"{values['pixel_auroc']:.3f}", f"{values['pixel_aupro']:.3f}"])
    smoothing = f", maps smoothed with sigma {sigma:g} px" if sigma else ""
    title = f"pixel metrics (type = its images + all normals; maps at <= {METRIC_MAX_SIDE} px{smoothing}):"
    return [title, render(["type", "image AUROC", "pixel AUROC", "AUPRO"], table)]
