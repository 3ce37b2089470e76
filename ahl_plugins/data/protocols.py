"""The OSAD evaluation protocols: which samples train, which test, and what training may see.

*General*: ``n_anomalies`` labelled anomalies drawn at random from all types;
the test set is the test normals plus every anomaly not used in training.
*Hard*: the labelled anomalies all come from ``anomaly_type``; the test set
holds the test normals and the anomalies of the *other* types only.

Training normals are the source's ``train`` partition (MVTec layout, NSL-KDD)
plus a seeded ``1 - test_fraction`` share of normals the source did not place
(``partition == "any"``); the rest of those go to the test set. Labelled
anomalies come from the source's ``train`` partition when it holds anomalies
(NSL-KDD's training file), otherwise from all anomalies (MVTec, ELPV: the
papers take them out of the test set). Contamination anomalies are drawn from
the same pool, never from the test set, and train with label 0; in the hard
setting they are of the seen type, so unseen types stay unseen.

A :class:`Split` is data only (indices, labels, ids): a trainer receives the
training part and nothing derived from the test part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ahl_plugins.data.dataset import NORMAL_TYPE, OSADDataset
from ahl_plugins.errors import DataError, InvalidOptionsError

SETTINGS = ("general", "hard")


@dataclass(frozen=True, eq=False)
class Split:
    """One seeded split of a dataset into training (with visible labels) and test."""

    setting: Literal["general", "hard"]
    seed: int
    n_anomalies: int
    seen_types: tuple[str, ...]
    train_indices: np.ndarray
    train_labels: np.ndarray
    test_indices: np.ndarray
    test_labels: np.ndarray
    test_types: np.ndarray
    contamination: float = 0.0
    contaminated_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    labelled_types: tuple[str, ...] = ()
    dataset_name: str = ""
    train_ids: tuple[str, ...] = ()
    test_ids: tuple[str, ...] = ()
    test_fraction: float = 0.25

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("train_indices", "train_labels", "test_indices", "test_labels", "contaminated_indices"):
            set_(self, name, np.asarray(getattr(self, name), dtype=np.int64).reshape(-1))
        set_(self, "test_types", np.asarray(self.test_types, dtype=str).reshape(-1))
        set_(self, "seen_types", tuple(str(t) for t in self.seen_types))
        set_(self, "labelled_types", tuple(str(t) for t in self.labelled_types))
        set_(self, "train_ids", tuple(str(t) for t in self.train_ids))
        set_(self, "test_ids", tuple(str(t) for t in self.test_ids))
        if len(self.train_labels) != len(self.train_indices):
            raise DataError("Split: one training label per training index")
        if not (len(self.test_labels) == len(self.test_types) == len(self.test_indices)):
            raise DataError("Split: one test label and type per test index")
        if np.intersect1d(self.train_indices, self.test_indices).size:
            raise DataError("Split: a sample is in both the training and the test set")
        if len(self.labelled_types) not in (0, int((self.train_labels == 1).sum())):
            raise DataError("Split: labelled_types must give one type per labelled anomaly")

    # -- views -----------------------------------------------------------------

    @property
    def labelled_indices(self) -> np.ndarray:
        """Training samples whose anomaly label training may use."""
        return self.train_indices[self.train_labels == 1]

    @property
    def unlabelled_indices(self) -> np.ndarray:
        """Training samples that train as normal (true normals and contamination)."""
        return self.train_indices[self.train_labels == 0]

    @property
    def unseen_types(self) -> list[str]:
        return sorted(set(self.test_types[self.test_labels == 1].tolist()) - set(self.seen_types))

    def check(self, dataset: OSADDataset) -> None:
        """Raise :class:`DataError` unless this split was made on ``dataset`` (same ids at the same indices)."""
        if self.dataset_name and self.dataset_name != dataset.name:
            raise DataError(f"split was made on dataset {self.dataset_name!r}, not {dataset.name!r}")
        top = max(int(self.train_indices.max(initial=-1)), int(self.test_indices.max(initial=-1)))
        if top >= len(dataset):
            raise DataError(f"split refers to sample {top} but dataset {dataset.name!r} has {len(dataset)}")
        for indices, ids, role in (
            (self.train_indices, self.train_ids, "train"),
            (self.test_indices, self.test_ids, "test"),
        ):
            if ids and [dataset.ids[i] for i in indices] != list(ids):
                raise DataError(
                    f"split's {role} sample ids differ from dataset {dataset.name!r}: the data changed since the "
                    "split was made; rebuild it (or re-index with dataset.indices_of(split ids))"
                )

    # -- reports ---------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        labelled = _counts(np.asarray(self.labelled_types, dtype=str))
        test_anomalies = _counts(self.test_types[self.test_labels == 1])
        return {
            "dataset": self.dataset_name,
            "setting": self.setting,
            "seed": int(self.seed),
            "n_anomalies": int(self.n_anomalies),
            "seen_types": list(self.seen_types),
            "unseen_types": self.unseen_types,
            "contamination": float(self.contamination),
            "train": {
                "normal": int((self.train_labels == 0).sum()) - int(self.contaminated_indices.size),
                "contamination": int(self.contaminated_indices.size),
                "labelled_anomalies": labelled,
                "total": int(self.train_indices.size),
            },
            "test": {
                "normal": int((self.test_labels == 0).sum()),
                "anomalies": test_anomalies,
                "total": int(self.test_indices.size),
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "ahl-plugins/split",
            "version": 1,
            "dataset": self.dataset_name,
            "setting": self.setting,
            "seed": int(self.seed),
            "n_anomalies": int(self.n_anomalies),
            "seen_types": list(self.seen_types),
            "contamination": float(self.contamination),
            "test_fraction": float(self.test_fraction),
            "train": {
                "indices": self.train_indices.tolist(),
                "labels": self.train_labels.tolist(),
                "ids": list(self.train_ids),
                "labelled_types": list(self.labelled_types),
                "contaminated_indices": self.contaminated_indices.tolist(),
            },
            "test": {
                "indices": self.test_indices.tolist(),
                "labels": self.test_labels.tolist(),
                "types": self.test_types.tolist(),
                "ids": list(self.test_ids),
            },
            "summary": self.summary(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Split:
        if d.get("format") != "ahl-plugins/split":
            raise DataError(f"not a saved split (format {d.get('format')!r})")
        try:
            train, test = d["train"], d["test"]
            return cls(
                setting=d["setting"],
                seed=int(d["seed"]),
                n_anomalies=int(d["n_anomalies"]),
                seen_types=tuple(d["seen_types"]),
                train_indices=np.asarray(train["indices"], dtype=np.int64),
                train_labels=np.asarray(train["labels"], dtype=np.int64),
                test_indices=np.asarray(test["indices"], dtype=np.int64),
                test_labels=np.asarray(test["labels"], dtype=np.int64),
                test_types=np.asarray(test["types"], dtype=str),
                contamination=float(d.get("contamination", 0.0)),
                contaminated_indices=np.asarray(train.get("contaminated_indices", []), dtype=np.int64),
                labelled_types=tuple(train.get("labelled_types", ())),
                dataset_name=d.get("dataset", ""),
                train_ids=tuple(train.get("ids", ())),
                test_ids=tuple(test.get("ids", ())),
                test_fraction=float(d.get("test_fraction", 0.25)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"saved split is incomplete or malformed: {exc!r}") from None


def make_split(
    dataset: OSADDataset,
    setting: Literal["general", "hard"] = "general",
    n_anomalies: int = 10,
    anomaly_type: str | None = None,
    seed: int = 0,
    contamination: float = 0.0,
    test_fraction: float = 0.25,
    need_test: bool = True,
) -> Split:
    """Draw one reproducible split (see the module doc for the rules).

    ``need_test=False`` (fitting a model to keep, e.g. ``ahl fit``) draws the
    same split but accepts a test set without anomalies or normals, even an
    empty one: only evaluation needs both classes.
    """
    if setting not in SETTINGS:
        raise InvalidOptionsError(f"setting must be one of {list(SETTINGS)}, got {setting!r}")
    if isinstance(n_anomalies, bool) or int(n_anomalies) != n_anomalies or n_anomalies < 1:
        raise InvalidOptionsError(f"n_anomalies must be a whole number >= 1, got {n_anomalies!r}")
    n_anomalies = int(n_anomalies)
    if not 0.0 <= contamination < 1.0:
        raise InvalidOptionsError(f"contamination must be in [0, 1), got {contamination!r}")
    if not 0.0 < test_fraction < 1.0:
        raise InvalidOptionsError(f"test_fraction must be in (0, 1), got {test_fraction!r}")

    labels, types, partition = dataset.labels, dataset.types, dataset.partition
    types_present = dataset.anomaly_types
    if not types_present:
        raise DataError(
            f"dataset {dataset.name!r} has no anomalies: open-set supervised detection needs labelled anomalies "
            "(MVTec layout: put them under test/<anomaly_type>/)"
        )
    rng = np.random.default_rng(seed)

    # normals: the source's partition, a seeded share of the rest
    normal = labels == 0
    train_normals = np.flatnonzero(normal & (partition == "train"))
    test_normals = np.flatnonzero(normal & (partition == "test"))
    loose = np.flatnonzero(normal & (partition == "any"))
    if loose.size:
        loose = rng.permutation(loose)
        n_test = int(round(test_fraction * loose.size))
        n_test = min(max(n_test, 1), loose.size - 1) if loose.size > 1 else 0
        test_normals = np.concatenate([test_normals, loose[:n_test]])
        train_normals = np.concatenate([train_normals, loose[n_test:]])
    train_normals, test_normals = np.sort(train_normals), np.sort(test_normals)
    if train_normals.size == 0:
        raise DataError(f"dataset {dataset.name!r}: no normal samples left for training")
    if test_normals.size == 0 and need_test:
        raise DataError(
            f"dataset {dataset.name!r}: no normal samples for the test set (AUC needs both classes); "
            "add test normals (MVTec layout: test/good/)"
        )

    # anomalies: labelled pool from the source's training partition if it has one
    anomaly = labels == 1
    train_part_anomalies = anomaly & (partition == "train")
    pool_mask = train_part_anomalies if train_part_anomalies.any() else anomaly
    pool_name = "in the training partition" if train_part_anomalies.any() else "in the dataset"
    if setting == "hard":
        if anomaly_type is None:
            raise InvalidOptionsError(
                f"the hard setting needs anomaly_type (--anomaly-type), the type the labelled anomalies come from; "
                f"dataset {dataset.name!r} has types {types_present}"
            )
        if anomaly_type not in types_present:
            raise DataError(f"anomaly type {anomaly_type!r} not in dataset {dataset.name!r}; types are {types_present}")
        if len(types_present) < 2 and need_test:
            raise DataError(
                f"the hard setting tests on anomaly types other than the seen one, but dataset {dataset.name!r} "
                f"has only {types_present}; use the general setting"
            )
        pool_mask = pool_mask & (types == anomaly_type)
        what = f"anomalies of type {anomaly_type!r} {pool_name}"
    else:
        if anomaly_type is not None:
            raise InvalidOptionsError(
                "anomaly_type applies to the hard setting only; the general setting draws from all types"
            )
        what = f"anomalies {pool_name}"
    pool = np.flatnonzero(pool_mask)
    if n_anomalies > pool.size:
        raise DataError(
            f"dataset {dataset.name!r}: {n_anomalies} labelled anomalies requested but only {pool.size} {what} exist; "
            f"lower n_anomalies (--n-anomalies) to at most {pool.size}"
        )
    drawn = rng.permutation(pool)
    labelled = drawn[:n_anomalies]
    rest = drawn[n_anomalies:]

    contaminated = np.zeros(0, np.int64)
    if contamination > 0:
        wanted = int(round(contamination * train_normals.size / (1.0 - contamination)))
        wanted = max(wanted, 1)
        if wanted > rest.size:
            raise DataError(
                f"dataset {dataset.name!r}: contamination {contamination} needs {wanted} unlabelled anomalies but only "
                f"{rest.size} {what} remain after drawing {n_anomalies} labelled ones"
            )
        contaminated = np.sort(rest[:wanted])

    used = np.concatenate([labelled, contaminated])
    test_anomaly_mask = anomaly & (partition != "train")
    test_anomaly_mask[used] = False
    if setting == "hard":
        test_anomaly_mask &= types != anomaly_type
    test_anomalies = np.flatnonzero(test_anomaly_mask)
    if test_anomalies.size == 0 and need_test:
        raise DataError(
            f"dataset {dataset.name!r}: no anomalies left for the test set after drawing {n_anomalies} for training "
            f"({int(anomaly.sum())} anomalies in all); lower n_anomalies"
        )

    train_indices = np.concatenate([train_normals, contaminated, labelled])
    train_labels = np.concatenate(
        [np.zeros(train_normals.size + contaminated.size, np.int64), np.ones(labelled.size, np.int64)]
    )
    test_indices = np.concatenate([test_normals, test_anomalies])
    test_indices.sort()
    seen = (anomaly_type,) if setting == "hard" else tuple(sorted(set(types[labelled].tolist())))
    return Split(
        setting=setting,
        seed=int(seed),
        n_anomalies=n_anomalies,
        seen_types=seen,
        train_indices=train_indices,
        train_labels=train_labels,
        test_indices=test_indices,
        test_labels=labels[test_indices],
        test_types=types[test_indices],
        contamination=float(contamination),
        contaminated_indices=contaminated,
        labelled_types=tuple(types[labelled].tolist()),
        dataset_name=dataset.name,
        train_ids=tuple(dataset.ids[i] for i in train_indices),
        test_ids=tuple(dataset.ids[i] for i in test_indices),
        test_fraction=float(test_fraction),
    )


def _counts(values: np.ndarray) -> dict[str, int]:
    uniq, counts = np.unique(np.asarray(values, dtype=str), return_counts=True)
    return {str(u): int(c) for u, c in zip(uniq, counts, strict=True) if u != NORMAL_TYPE}
