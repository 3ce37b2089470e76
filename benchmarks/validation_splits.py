"""Validation cases carved from training data only: what every detection default is chosen on.

No case reads a sample that any published result (``docs/results.md``) tests on:

- ``nsl_kdd/<group>`` (tabular, hard): NSL-KDD's *training* file alone. Per seed,
  2/3 of its normals and 10 attacks of ``<group>`` train; the other normals
  and every training-file attack of the other groups validate. The results
  test on ``KDDTest+``, which this never reads.
- ``digits/<digit>`` (pixels as vectors, hard): scikit-learn's digits, normal
  0-6, 10 labelled ``<digit>``; the demo's data set, which no results table
  uses (the demo labels digit 7; these runs label 8 or 9).
- ``pmlb/<name>`` and ``adbench/<category>`` (tabular and image embeddings,
  general): the *training part* of the results' own split for that seed
  (its training normals and its 10 labelled anomalies). 2/3 of those normals
  and 5 of the anomalies train; the other third and the other 5 validate.
  The hard setting cannot be carved here (training holds one type only).
- ``mt/general`` (image feature maps, general (carved)): the same carving of
  Magnetic Tile's results split (714 training normals, 10 labelled defects),
  on EfficientNet-Lite0 maps at the results' 10 epochs. Only 5 anomalies
  validate per seed, so this family is noisier than the others.

*M = 1* (``n_anomalies=1``, the AHL paper's second protocol): every case keeps
its validation part and trains with the first of its labelled anomalies only,
so an M = 1 row pairs with the M = 10 row of the same case and seed. NSL-KDD
and digits stay clean at M = 1. The carved families cannot: an M = 1 results
split labels one anomaly and tests on all the others, so the 5 anomalies a
carved case validates on sit in the M = 1 results' test set of that seed
(at M = 10 they are training data). Their M = 1 rows may *check* a default;
a default that depends on M must be chosen on the clean families
(:data:`CLEAN_AT_M1`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ahl_plugins.data.load import load_dataset
from ahl_plugins.data.protocols import make_split
from benchmarks.harness import SHARED_DATA as SHARED

PMLB_SETS = ("ann_thyroid", "page_blocks", "satimage")
ADBENCH_SETS = ("bottle", "carpet", "hazelnut", "screw", "transistor")


@dataclass(frozen=True)
class Case:
    """One validation problem: fit on (x_fit, y_fit), score (x_val, y_val)."""

    family: str
    name: str
    seed: int
    x_fit: np.ndarray
    y_fit: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    #: detector options the results use on this family (image cases: extractor and epochs)
    detector_options: dict = field(default_factory=dict)
    #: the protocol's M: 10 (carved cases: 5 of the 10 train) or 1 (one trains)
    n_anomalies: int = 10

    @property
    def is_image(self) -> bool:
        return isinstance(self.x_fit, list)


#: families whose validation part no published test set holds at M = 1 either
CLEAN_AT_M1 = ("tabular, hard", "digits, hard")


def nsl_kdd_case(dataset, group: str, seed: int, n_anomalies: int = 10) -> Case:
    rng = np.random.default_rng([seed, 0x4B44])
    train = dataset.partition == "train"
    normals = rng.permutation(np.flatnonzero(train & (dataset.labels == 0)))
    n_fit = (2 * normals.size) // 3
    # draw the M = 10 attacks and keep the first M: the same stream, so M = 1 trains on a subset of M = 10
    seen = rng.choice(np.flatnonzero(train & (dataset.types == group)), 10, replace=False)[:n_anomalies]
    unseen = np.flatnonzero(train & (dataset.labels == 1) & (dataset.types != group))
    fit_rows = np.concatenate([normals[:n_fit], seen])
    val_rows = np.concatenate([normals[n_fit:], unseen])
    x = dataset.inputs
    return Case(
        "tabular, hard",
        f"nsl_kdd/{group}",
        seed,
        x[fit_rows],
        dataset.labels[fit_rows],
        x[val_rows],
        dataset.labels[val_rows],
        n_anomalies=n_anomalies,
    )


def digits_case(dataset, digit: str, seed: int, n_anomalies: int = 10) -> Case:
    split = make_split(dataset, "hard", n_anomalies=n_anomalies, anomaly_type=digit, seed=seed)
    x = dataset.inputs
    return Case(
        "digits, hard",
        f"digits/{digit}",
        seed,
        x[split.train_indices],
        split.train_labels,
        x[split.test_indices],
        split.test_labels,
        n_anomalies=n_anomalies,
    )


def carved_case(
    dataset, family: str, name: str, seed: int, detector_options: dict | None = None, n_anomalies: int = 10
) -> Case:
    """The training part of the results' general split (M = 10, this seed), cut into fit and validation.

    ``n_anomalies`` below 5 trains on the first M of the fit half's anomalies; validation is unchanged.
    """
    split = make_split(dataset, "general", n_anomalies=10, seed=seed)
    rows, labels = split.train_indices, split.train_labels
    rng = np.random.default_rng([seed, 0x56414C])  # "VAL"
    normals = rng.permutation(rows[labels == 0])
    anomalies = rng.permutation(rows[labels == 1])
    n_fit = (2 * normals.size) // 3
    half = anomalies.size // 2
    fit_rows = np.concatenate([normals[:n_fit], anomalies[: min(half, n_anomalies)]])
    val_rows = np.concatenate([normals[n_fit:], anomalies[half:]])
    y = (dataset.labels != 0).astype(np.int64)

    def take(rows: np.ndarray):
        return [dataset.inputs[i] for i in rows] if isinstance(dataset.inputs, list) else dataset.inputs[rows]

    return Case(
        family,
        name,
        seed,
        take(fit_rows),
        y[fit_rows],
        take(val_rows),
        y[val_rows],
        dict(detector_options or {}),
        n_anomalies=n_anomalies,
    )


#: what the results run Magnetic Tile with (``benchmarks/compare_catalogue.py``)
MT_OPTIONS = {"extractor": "efficientnet_lite0", "epochs": 10}


def validation_cases(
    seeds: int, families: tuple[str, ...] = ("nsl_kdd", "digits", "pmlb", "adbench", "mt"), n_anomalies: int = 10
) -> Iterator[Case]:
    """Every validation case that can run here (missing shared data is skipped with a note); M = ``n_anomalies``."""
    if "nsl_kdd" in families:
        root = SHARED / "tabular" / "nsl_kdd"
        if root.is_dir():
            kdd = load_dataset(root)
            for group in ("DoS", "Probe", "R2L"):
                for seed in range(seeds):
                    yield nsl_kdd_case(kdd, group, seed, n_anomalies)
        else:
            print(f"skipping NSL-KDD: {root} not found", file=sys.stderr)
    if "digits" in families:
        digits = load_dataset("digits")
        for digit in ("digit_8", "digit_9"):
            for seed in range(seeds):
                yield digits_case(digits, digit, seed, n_anomalies)
    carved = {
        "pmlb": ("tabular, general (carved)", [(n, SHARED / "tabular" / "pmlb" / f"{n}.tsv.gz") for n in PMLB_SETS]),
        "adbench": (
            "embeddings, general (carved)",
            [(n, SHARED / "embeddings" / "adbench_mvtec" / f"{n}.npz") for n in ADBENCH_SETS],
        ),
    }
    for family, (title, sources) in carved.items():
        if family not in families:
            continue
        for name, path in sources:
            if not path.is_file():
                print(f"skipping {path}: not found", file=sys.stderr)
                continue
            dataset = load_dataset(path)
            for seed in range(seeds):
                yield carved_case(dataset, title, f"{family}/{name}", seed, n_anomalies=n_anomalies)
    if "mt" in families:
        root = SHARED / "mt"
        if root.is_dir():
            dataset = load_dataset(root)
            for seed in range(seeds):
                yield carved_case(dataset, "image maps, general (carved)", "mt/general", seed, MT_OPTIONS, n_anomalies)
        else:
            print(f"skipping Magnetic Tile: {root} not found", file=sys.stderr)
