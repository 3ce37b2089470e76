"""What ``fit`` and ``decision_function`` accept, turned into one of two forms: image paths or a float matrix.

Accepted: a 2-D array or tensor, a list of image paths, an ``OSADDataset``, or a raw table (a mapping of
column name -> values, e.g. a dict or a pandas DataFrame), which the detector's own tabular encoder turns
into numbers so that a saved model scores raw rows after ``OSADDetector.load``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ahl_plugins.contracts import InputKind
from ahl_plugins.data.dataset import OSADDataset
from ahl_plugins.data.tables import detect_categorical
from ahl_plugins.data.tabular import TabularEncoder
from ahl_plugins.errors import DataError

Inputs = list[Path] | np.ndarray


def raw_table(X: Any) -> dict[str, np.ndarray] | None:
    """``X`` as columns when it is a raw table (a mapping or a DataFrame-like object), else None."""
    if isinstance(X, OSADDataset):
        return X.raw_table if X.encoder is not None else None
    if isinstance(X, Mapping) or (
        hasattr(X, "columns") and hasattr(X, "__getitem__") and not isinstance(X, np.ndarray)
    ):
        try:
            return (
                {str(c): np.asarray(X[c]) for c in X}
                if isinstance(X, Mapping)
                else {str(c): np.asarray(X[c]) for c in X.columns}
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"cannot read the table's columns ({exc}); pass a mapping of column -> values") from None
    return None


def fit_encoder(X: Any) -> TabularEncoder | None:
    """The encoder a detector keeps for raw tables: the dataset's own, or one fitted on the table given to fit."""
    if isinstance(X, OSADDataset):
        return X.encoder if X.raw_table is not None else None
    table = raw_table(X)
    if table is None:
        return None
    return TabularEncoder.fit(table, detect_categorical(table))


def coerce(X: Any, encoder: TabularEncoder | None = None) -> tuple[Inputs, InputKind]:
    """``X`` as image paths or a contiguous float32 matrix; ``encoder`` encodes raw tables."""
    if isinstance(X, OSADDataset):  # a table is re-encoded with the detector's own vocabulary when it differs
        if encoder is not None and X.raw_table is not None and encoder is not X.encoder:
            X = encoder.transform(X.raw_table)
        else:
            X = X.inputs
    table = raw_table(X)
    if table is not None:
        if encoder is None:
            raise DataError(
                "got a raw table, but this detector has no tabular encoder: it was fitted on numbers. "
                "Fit it on the table (or on an OSADDataset loaded from one), or pass the encoded matrix"
            )
        X = encoder.transform(table)
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if isinstance(X, np.ndarray) and X.dtype.kind in "fiub":
        if X.ndim != 2:
            raise DataError(f"array input must be 2-D (n_samples × n_features), got shape {X.shape}")
        if len(X) == 0:
            raise DataError("empty input: no rows to fit or score")
        return np.ascontiguousarray(X, dtype=np.float32), "vector"
    if isinstance(X, (str, Path)):
        raise DataError(f"got a single path {X!r}; pass a list of image paths or an OSADDataset")
    if isinstance(X, (Sequence, np.ndarray)) and len(X) and all(isinstance(p, (str, Path)) for p in X):
        return [Path(p) for p in X], "image"
    if isinstance(X, (Sequence, np.ndarray)) and len(X) == 0:
        raise DataError("empty input: no samples to fit or score")
    raise DataError(
        f"unsupported input of type {type(X).__name__}; pass a 2-D array or tensor, a list of image paths, "
        "a table (mapping of column -> values) or an OSADDataset"
    )


def as_labels(y: Any) -> np.ndarray:
    """``y`` as int64 0/1 labels; NaN, infinite or fractional values are errors, never cast away."""
    values = np.asarray(y).reshape(-1)
    if values.dtype.kind == "b":
        return values.astype(np.int64)
    if values.dtype.kind not in "iuf":
        try:  # object arrays (pandas' nullable integers) and numeric strings
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            raise DataError(
                f"y must hold the numbers 0 (normal/unlabelled) or 1 (labelled anomaly), got dtype {values.dtype}"
            ) from None
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DataError(
                f"y holds NaN or infinite values at positions {bad[:10].tolist()}; every sample needs a label 0 or 1"
            )
        bad = np.flatnonzero(values != np.round(values))
        if bad.size:
            raise DataError(
                f"y holds non-integer values ({', '.join(f'{values[i]:g}' for i in bad[:5])} at positions "
                f"{bad[:10].tolist()}); labels must be exactly 0 or 1 (threshold scores first, e.g. y = p >= 0.5)"
            )
    labels = values.astype(np.int64)
    if not np.isin(labels, (0, 1)).all():
        raise DataError(
            f"y must hold 0 (normal/unlabelled) or 1 (labelled anomaly); found {sorted(set(labels.tolist()))}"
        )
    return labels


def training_labels(
    X: Any, y: Any, anomaly_types: Sequence[str] | None, n_inputs: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(normal indices, seen-anomaly indices, their types)`` from fit's ``y`` (a dataset's own labels when
    ``y`` is None) and ``anomaly_types``."""
    if y is None and isinstance(X, OSADDataset):
        y = X.labels
        anomaly_types = anomaly_types if anomaly_types is not None else list(X.types)
    if y is None:
        raise DataError("fit needs labels y (1 = labelled anomaly, 0 = normal or unlabelled)")
    labels = as_labels(y)
    if len(labels) != n_inputs:
        raise DataError(f"X has {n_inputs} samples but y has {len(labels)} labels")
    normal_idx, seen_idx = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if len(normal_idx) < 2:
        raise DataError(f"fit needs normal training samples (y == 0); got {len(normal_idx)}")
    types = [str(anomaly_types[int(i)]) for i in seen_idx] if anomaly_types is not None else ["anomaly"] * len(seen_idx)
    return normal_idx, seen_idx, types
