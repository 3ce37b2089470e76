"""The label-free reference: k-NN distance to the training normals.

This is what a user would deploy without any anomaly labels. It runs on the
very features the detectors see (same extractor, same standardisation, same
feature cache), so a row where base or AHL falls below it means the labels
did not pay off on that split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ahl_plugins.contracts import FeatureExtractor, InputKind
from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.errors import DataError
from ahl_plugins.features.patch_memory import nearest_distances
from ahl_plugins.features.store import Features

KnnMethod = Literal["kth", "mean"]


def pooled(features: Features) -> np.ndarray:
    """One row per sample: maps are global-average-pooled, scales concatenated."""
    parts = []
    for tensor in features.scales:
        t = tensor.detach().float().cpu()
        if t.dim() == 4:
            t = t.mean(dim=(2, 3))
        elif t.dim() != 2:
            raise DataError(f"k-NN needs B×C×H×W maps or B×D vectors, got features of shape {tuple(t.shape)}")
        parts.append(t)
    return torch.cat(parts, dim=1).numpy()


def knn_scores(
    reference: np.ndarray, queries: np.ndarray, k: int = 5, method: KnnMethod = "kth", chunk: int = 2048
) -> np.ndarray:
    """Euclidean distance of each query to its k nearest reference rows.

    ``method="kth"`` takes the k-th neighbour's distance (PyOD's default),
    ``"mean"`` the mean of the k. ``k`` is capped at the reference size.
    """
    if k < 1:
        raise DataError(f"k-NN needs k >= 1, got {k}")
    ref = torch.as_tensor(np.asarray(reference, dtype=np.float32))
    qry = torch.as_tensor(np.asarray(queries, dtype=np.float32))
    if ref.dim() != 2 or qry.dim() != 2 or ref.shape[1] != qry.shape[1]:
        raise DataError(
            f"k-NN: reference {tuple(ref.shape)} and queries {tuple(qry.shape)} must be 2-D with equal width"
        )
    if len(ref) == 0:
        raise DataError("k-NN needs at least one training normal")
    k = min(k, len(ref))
    out = []
    for start in range(0, len(qry), chunk):
        nearest = nearest_distances(qry[start : start + chunk], ref, k)
        out.append(nearest[:, -1] if method == "kth" else nearest.mean(dim=1))
    return torch.cat(out).numpy() if out else np.zeros(0)


def build_extractor(
    model: str, extractor: str | None, kind: InputKind, options: dict[str, Any] | None = None
) -> FeatureExtractor:
    """The extractor a detector for ``model`` would use on ``kind`` inputs (``extractor`` overrides)."""
    from ahl_plugins.plugins import get_manager

    manager = get_manager()
    spec = manager.model(model)
    name = extractor or (spec.image_extractor if kind == "image" else spec.vector_extractor)
    entry = manager.get("feature_extractors", name)
    built = entry.build(options=options)
    if built.input_kind != kind:
        raise DataError(f"extractor {name!r} takes {built.input_kind} inputs but the data are {kind}s")
    return built


def knn_reference(
    train_inputs: list[Path] | np.ndarray,
    train_labels: Sequence[int] | np.ndarray,
    test_inputs: list[Path] | np.ndarray,
    *,
    model: str = "devnet",
    extractor: str | FeatureExtractor | None = None,
    extractor_options: dict[str, Any] | None = None,
    k: int = 5,
    method: KnnMethod = "kth",
    cache: Any = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    timings: dict[str, Any] | None = None,
    read: ReadSettings = DEFAULT_READ,
) -> np.ndarray:
    """k-NN anomaly scores of ``test_inputs`` against the training normals (``train_labels == 0``).

    The extractor is fitted on all training rows, as :class:`OSADDetector`
    fits it, so vectors are standardised identically; labels only pick the
    reference rows (the normals), exactly what an unsupervised user would use.
    ``timings``, when given, receives ``fit`` and ``score`` seconds and the
    extractor's name.
    """
    import time

    from ahl_plugins.features.pipeline import extract_features

    started = time.perf_counter()

    kind: InputKind = "vector" if isinstance(train_inputs, np.ndarray) else "image"
    built = (
        extractor
        if isinstance(extractor, FeatureExtractor)
        else build_extractor(model, extractor, kind, extractor_options)
    )
    built = built.to(device)
    labels = np.asarray(train_labels).reshape(-1)
    if len(labels) != len(train_inputs):
        raise DataError(f"k-NN: {len(train_inputs)} training inputs but {len(labels)} labels")
    normal_idx = np.flatnonzero(labels == 0)
    normals: list[Path] | np.ndarray
    if kind == "vector":
        built.fit(torch.from_numpy(np.ascontiguousarray(train_inputs, dtype=np.float32)))
        normals = np.asarray(train_inputs)[normal_idx]  # vectors come as one array
    else:
        normals = [train_inputs[i] for i in normal_idx]
    options = {"cache": cache, "batch_size": batch_size, "device": device, "progress": False, "read": read}
    reference = pooled(extract_features(built, normals, **options))
    fitted = time.perf_counter()
    queries = pooled(extract_features(built, test_inputs, **options))
    scores = knn_scores(reference, queries, k=k, method=method)
    if timings is not None:
        timings.update(
            fit=fitted - started,
            score=time.perf_counter() - fitted,
            extractor=extractor if isinstance(extractor, str) else type(built).__name__,
        )
    return scores
