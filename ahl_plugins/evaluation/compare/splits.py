"""Building the splits of a grid: the inputs and labels every cell on a split shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.errors import DataError
from ahl_plugins.evaluation.grid import ALL_TYPES, SplitKey


@dataclass(frozen=True)
class SplitData:
    """The inputs and labels one split hands to every cell on it (picklable: workers receive it)."""

    key: SplitKey
    split: Any  # ahl_plugins.data.protocols.Split
    dataset_name: str
    train_inputs: list[Path] | np.ndarray
    train_labels: np.ndarray
    train_types: np.ndarray
    test_inputs: list[Path] | np.ndarray
    test_labels: np.ndarray
    test_types: np.ndarray
    test_subtypes: np.ndarray | None = None
    test_masks: list[Path | None] | None = None  # ground-truth mask files (None for normals), when the data have masks
    train_masks: list[Path | None] | None = None  # the same for the training inputs (the labelled anomalies' masks)
    read: ReadSettings = DEFAULT_READ  # how the data set's images are read: travels with them into every worker

    def counts(self) -> dict[str, Any]:
        """The split's sizes, as the ``results.csv`` columns name them."""
        return {
            "n_train_normals": int((self.train_labels == 0).sum()),
            "n_train_anomalies": int((self.train_labels == 1).sum()),
            "n_test_normals": int((self.test_labels == 0).sum()),
            "n_test_anomalies": int((self.test_labels == 1).sum()),
            "unseen_types": ";".join(self.split.summary().get("unseen_types", [])),
        }


def resolve_hard_types(dataset: Any, requested: Sequence[str] | None) -> list[str]:
    """The seen types of the hard setting; an unknown name is a typo, reported up front."""
    present = list(dataset.anomaly_types)
    if requested is None or list(requested) == [ALL_TYPES]:
        return present
    missing = [t for t in requested if t not in present]
    if missing:
        raise DataError(f"anomaly type(s) {missing} not in dataset {dataset.name!r}; its types are {present}")
    return list(dict.fromkeys(requested))


def split_data(dataset: Any, key: SplitKey) -> SplitData:
    """Build one split (raises ``DataError`` when the split is impossible)."""
    from ahl_plugins.data.protocols import make_split

    split = make_split(
        dataset,
        setting=key.setting,  # type: ignore[arg-type]  # a str that CompareConfig checked is "general" or "hard"
        n_anomalies=key.n_anomalies,
        anomaly_type=None if key.setting == "general" else key.seen_type,
        seed=key.seed,
    )
    if (
        getattr(dataset, "encoder", None) is not None
        and getattr(dataset, "raw_table", None) is not None
        and not dataset.has_partition
    ):
        from ahl_plugins.data.tabular import refit_encoding

        dataset = refit_encoding(dataset, split.train_indices)  # vocabulary from this split's training rows only
    train_types = np.where(split.train_labels == 1, dataset.types[split.train_indices], "normal")
    return SplitData(
        key=key,
        split=split,
        dataset_name=dataset.name,
        train_inputs=dataset.select_inputs(split.train_indices),
        train_labels=split.train_labels,
        train_types=train_types,
        test_inputs=dataset.select_inputs(split.test_indices),
        test_labels=split.test_labels,
        test_types=split.test_types,
        test_subtypes=None if dataset.subtypes is None else dataset.subtypes[split.test_indices],
        test_masks=None if getattr(dataset, "masks", None) is None else [dataset.masks[i] for i in split.test_indices],
        train_masks=None
        if getattr(dataset, "masks", None) is None
        else [dataset.masks[i] for i in split.train_indices],
        read=getattr(dataset, "read", DEFAULT_READ),
    )
