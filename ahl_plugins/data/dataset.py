"""The one in-memory form every data source is turned into.

An :class:`OSADDataset` carries ground truth (labels and anomaly types) for
*all* samples. What a trainer may see is decided later by a
:class:`~ahl_plugins.data.protocols.Split`; keeping the two apart is what
lets the split be audited and makes "test statistics never reach training"
checkable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.errors import DataError

NORMAL_TYPE = "normal"
PARTITIONS = ("train", "test", "any")


@dataclass(frozen=True, eq=False)
class OSADDataset:
    """Samples with ground truth, in a fixed order that indices refer to.

    ``partition`` says where the *source* put a sample: ``"train"``/``"test"``
    for sources with a fixed split (MVTec layout, NSL-KDD's two files) and
    ``"any"`` where the protocol has to split (a single CSV, ELPV anomalies).
    ``subtypes`` optionally refines ``types`` (NSL-KDD: attack name under the
    attack group). ``skipped`` lists files left out as ``"<file>: <reason>"``
    (unreadable ones on request; always those with an extension not read),
    ``encoder`` is the fitted tabular encoder (for re-applying it to new rows),
    ``raw_table`` the table's columns before encoding (to refit it on a
    split's training rows) and ``info`` free JSON-friendly provenance (source, dropped rows, ...). ``read``:
    how image inputs are decoded (bit depth, channels, resize); it travels with the data into every reader.
    """

    name: str
    input_kind: Literal["image", "vector"]
    inputs: list[Path] | np.ndarray
    labels: np.ndarray
    types: np.ndarray
    ids: list[str]
    partition: np.ndarray
    masks: list[Path | None] | None = None
    feature_names: list[str] | None = None
    subtypes: np.ndarray | None = None
    skipped: tuple[str, ...] = ()
    encoder: Any = None
    raw_table: dict[str, np.ndarray] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    read: ReadSettings = DEFAULT_READ

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.input_kind not in ("image", "vector"):
            raise DataError(f"input_kind must be 'image' or 'vector', got {self.input_kind!r}")
        if self.input_kind == "image":
            set_(self, "inputs", [Path(p) for p in self.inputs])
        else:
            inputs = np.asarray(self.inputs)
            if inputs.ndim != 2:
                raise DataError(f"vector inputs must be a 2-D array (n, d), got shape {inputs.shape}")
            set_(self, "inputs", inputs.astype(np.float32, copy=False))
        n = len(self.inputs)
        set_(self, "labels", np.asarray(self.labels).astype(np.int64, copy=False).reshape(-1))
        set_(self, "types", np.asarray(self.types, dtype=str).reshape(-1))
        set_(self, "partition", np.asarray(self.partition, dtype=str).reshape(-1))
        set_(self, "ids", [str(i) for i in self.ids])
        if self.subtypes is not None:
            set_(self, "subtypes", np.asarray(self.subtypes, dtype=str).reshape(-1))
        sizes = {
            "labels": len(self.labels),
            "types": len(self.types),
            "ids": len(self.ids),
            "partition": len(self.partition),
        }
        if self.raw_table is not None:
            sizes.update({f"raw_table[{k!r}]": len(v) for k, v in self.raw_table.items()})
        if self.masks is not None:
            sizes["masks"] = len(self.masks)
        if self.subtypes is not None:
            sizes["subtypes"] = len(self.subtypes)
        wrong = {k: v for k, v in sizes.items() if v != n}
        if wrong:
            raise DataError(f"dataset {self.name!r}: {n} inputs but {wrong}; every field needs one entry per sample")
        if (
            self.feature_names is not None
            and self.input_kind == "vector"
            and len(self.feature_names) != np.asarray(self.inputs).shape[1]
        ):
            raise DataError(
                f"dataset {self.name!r}: {len(self.feature_names)} feature names for {np.asarray(self.inputs).shape[1]} columns"
            )
        bad = np.flatnonzero((self.labels != 0) & (self.labels != 1))
        if bad.size:
            raise DataError(
                f"dataset {self.name!r}: labels must be 0 (normal) or 1 (anomaly); rows {_few(bad)} are not"
            )
        mismatch = np.flatnonzero((self.labels == 0) != (self.types == NORMAL_TYPE))
        if mismatch.size:
            raise DataError(
                f"dataset {self.name!r}: rows {_few(mismatch)} disagree between label and type "
                f"(normal rows must have type {NORMAL_TYPE!r}, anomalies any other type)"
            )
        unknown = sorted(set(self.partition.tolist()) - set(PARTITIONS))
        if unknown:
            raise DataError(f"dataset {self.name!r}: partition values {unknown} unknown; use {list(PARTITIONS)}")
        if len(set(self.ids)) != n:
            raise DataError(f"dataset {self.name!r}: sample ids must be unique")

    def __len__(self) -> int:
        return len(self.inputs)

    def __repr__(self) -> str:
        return f"OSADDataset(name={self.name!r}, input_kind={self.input_kind!r}, n={len(self)}, types={self.type_counts()})"

    @property
    def anomaly_types(self) -> list[str]:
        return sorted(set(self.types[self.labels == 1].tolist()))

    @property
    def has_partition(self) -> bool:
        """True when the source fixed a train/test split (MVTec layout, NSL-KDD)."""
        return bool(np.any(self.partition == "train"))

    def type_counts(self) -> dict[str, int]:
        values, counts = np.unique(self.types, return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts, strict=True)}

    def select_inputs(self, indices: Sequence[int] | np.ndarray) -> list[Path] | np.ndarray:
        idx = _as_indices(indices, len(self))
        if self.input_kind == "image":
            return [self.inputs[i] for i in idx]
        return np.asarray(self.inputs)[idx]  # vectors are one array

    def subset(self, indices: Sequence[int] | np.ndarray) -> OSADDataset:
        """The samples at ``indices``, in that order (ids stay the same)."""
        idx = _as_indices(indices, len(self))
        if len(set(idx.tolist())) != idx.size:
            raise DataError("subset indices must not repeat: sample ids would no longer be unique")
        return replace(
            self,
            inputs=self.select_inputs(idx),
            labels=self.labels[idx],
            types=self.types[idx],
            ids=[self.ids[i] for i in idx],
            partition=self.partition[idx],
            masks=None if self.masks is None else [self.masks[i] for i in idx],
            subtypes=None if self.subtypes is None else self.subtypes[idx],
            raw_table=None if self.raw_table is None else {k: np.asarray(v)[idx] for k, v in self.raw_table.items()},
            info=dict(self.info),
        )

    def indices_of(self, ids: Sequence[str]) -> np.ndarray:
        """Positions of the given sample ids (to re-apply a saved split)."""
        where = {sample_id: i for i, sample_id in enumerate(self.ids)}
        missing = [s for s in ids if s not in where]
        if missing:
            raise DataError(
                f"dataset {self.name!r} has no samples with ids {missing[:5]}"
                f"{' and more' if len(missing) > 5 else ''}: was the split made on another data set?"
            )
        return np.asarray([where[s] for s in ids], dtype=np.int64)


def _as_indices(indices: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise DataError(f"boolean mask of length {idx.shape} for {n} samples")
        return np.flatnonzero(idx)
    idx = idx.astype(np.int64, copy=False).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise DataError(f"indices out of range for {n} samples")
    return np.where(idx < 0, idx + n, idx)


def _few(rows: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    return f"[{shown}{', ...' if len(rows) > limit else ''}] ({len(rows)} in all)"
