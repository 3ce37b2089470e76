"""Vector data: numpy arrays and ``.npz`` files (ADBench layout); CSV/TSV tables: ``data.tables``.

Labels follow the OSAD convention: 0 normal, 1 anomaly. Anomaly types come
from a type column/array when there is one; otherwise a 0/1 label gives the
single type ``"anomaly"`` and a multi-class label gives ``"class_<value>"``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ahl_plugins.data.dataset import NORMAL_TYPE, OSADDataset
from ahl_plugins.data.tabular import check_finite
from ahl_plugins.errors import DataError

ANOMALY_TYPE = "anomaly"


def from_arrays(
    X: np.ndarray,
    y: Sequence[int] | np.ndarray,
    types: Sequence[str] | np.ndarray | None = None,
    *,
    name: str = "arrays",
    partition: Sequence[str] | np.ndarray | None = None,
    feature_names: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> OSADDataset:
    """An :class:`OSADDataset` of vectors from ``X`` (n × d) and 0/1 labels ``y``.

    ``types`` (optional) names each anomaly's type; entries for normal rows
    are ignored. Without it every anomaly has type ``"anomaly"``.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise DataError(f"{name}: X must be a 2-D array (n samples × d features), got shape {X.shape}")
    if X.dtype.kind not in "fiub":
        raise DataError(f"{name}: X must be numeric, got dtype {X.dtype}; encode categorical columns first")
    y = np.asarray(y)
    if y.ndim != 1:
        y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise DataError(
            f"{name}: label/row count mismatch: X has {X.shape[0]} rows but y has "
            f"{y.shape[0] if y.ndim else 0} labels (shape {y.shape})"
        )
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(
            f"{name}: labels y hold NaN or infinity at rows {np.flatnonzero(~np.isfinite(y))[:10].tolist()}"
        )
    if y.dtype.kind not in "fiub":
        raise DataError(f"{name}: labels must be numbers 0 (normal) / 1 (anomaly), got dtype {y.dtype}")
    values = sorted(set(np.unique(y).tolist()))
    if not set(values) <= {0, 1}:
        raise DataError(
            f"{name}: labels must be 0 (normal) or 1 (anomaly); found values {values[:10]}. "
            "Map them to 0/1 (and pass the classes as types), or load a table with normal_labels=..."
        )
    feature_names = list(feature_names) if feature_names is not None else None
    X = X.astype(np.float32)
    check_finite(X, feature_names, where=name)
    labels = y.astype(np.int64)
    if types is None:
        kinds = np.where(labels == 1, ANOMALY_TYPE, NORMAL_TYPE)
    else:
        types = np.asarray(types).astype(str).reshape(-1)
        if types.shape[0] != X.shape[0]:
            raise DataError(f"{name}: {types.shape[0]} types for {X.shape[0]} rows; give one type per row")
        bad = np.flatnonzero((labels == 1) & np.isin(np.char.lower(np.char.strip(types)), [NORMAL_TYPE, ""]))
        if bad.size:
            raise DataError(
                f"{name}: anomalies at rows {bad[:10].tolist()} have type {str(types[bad[0]])!r}; "
                f"an anomaly type must be non-empty and not {NORMAL_TYPE!r}"
            )
        kinds = np.where(labels == 1, types, NORMAL_TYPE)
    if partition is None:
        partition = np.full(X.shape[0], "any")
    return OSADDataset(
        name=name,
        input_kind="vector",
        inputs=X,
        labels=labels,
        types=kinds,
        ids=list(ids) if ids is not None else [f"row:{i}" for i in range(X.shape[0])],
        partition=np.asarray(partition, dtype=str),
        feature_names=feature_names,
    )


def load_npz(
    path: str | Path,
    *,
    x_key: str = "X",
    y_key: str = "y",
    type_key: str | None = None,
    name: str | None = None,
) -> OSADDataset:
    """An ADBench-style ``.npz`` (``X``, ``y``; optional ``types`` and ``partition``)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            content = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as exc:
        # zipfile raises NotImplementedError for compression it lacks and RuntimeError for encrypted members
        raise DataError(f"cannot read {path} as a .npz archive: {exc}") from None
    for key in (x_key, y_key):
        if key not in content:
            raise DataError(f"{path}: no array {key!r}; the archive holds {sorted(content)}")
    if type_key is None:
        type_key = next((k for k in ("types", "type", "y_type") if k in content), None)
    elif type_key not in content:
        raise DataError(f"{path}: no array {type_key!r}; the archive holds {sorted(content)}")
    dataset = from_arrays(
        content[x_key],
        content[y_key],
        content[type_key] if type_key else None,
        name=name or path.name.split(".")[0],
        partition=partition_values(content["partition"], path) if "partition" in content else None,
        feature_names=[str(f) for f in content["feature_names"]] if "feature_names" in content else None,
    )
    return with_info(dataset, source=str(path.resolve()), layout="npz")


def partition_values(values: np.ndarray, path: Path) -> np.ndarray:
    aliases = {"train": "train", "training": "train", "test": "test", "testing": "test", "any": "any", "": "any"}
    lowered = [str(v).strip().lower() for v in np.asarray(values).tolist()]
    unknown = sorted({v for v in lowered if v not in aliases})
    if unknown:
        raise DataError(f"{path}: partition values {unknown[:10]} unknown; use train/test (or any)")
    return np.asarray([aliases[v] for v in lowered])


def with_info(dataset: OSADDataset, **info) -> OSADDataset:
    from dataclasses import replace

    return replace(dataset, info={**dataset.info, **info})
