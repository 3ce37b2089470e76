"""The demo data set: scikit-learn's bundled handwritten digits as an OSAD task.

``sklearn.datasets.load_digits`` ships with a declared dependency, so the
demo runs on a fresh machine without a download: 1,797 8×8 images of the
digits 0-9 (about 180 each), flattened to 64 grey levels in 0..16 and scaled
here by the constant 1/16 to [0, 1] (no statistic of the data is used).

The split:

* **normal** = digits 0-6 (seven classes, 1,264 images): a heterogeneous
  normal class, which is what AHL's clustering of the normals into tasks is
  built for;
* **anomaly types** = ``digit_7``, ``digit_8``, ``digit_9`` (533 images);
* for the hard setting the demo labels anomalies of :data:`DEMO_SEEN_TYPE`
  (``digit_7``, whose strokes resemble the normal 1s) and tests on the
  unseen ``digit_8`` and ``digit_9``.

Every sample is unplaced (``partition == "any"``), so each protocol seed
re-draws the 75/25 split of the normals. Measured on this split (hard
setting, 10 labelled 7s, 3 seeds, AUC-ROC): a label-free 5-NN distance to
the training normals reaches about 0.90, a logistic regression on the 10
labelled 7s against the normals only about 0.65. Weak supervision that
overfits the seen type is the gap the demo makes visible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ahl_plugins.data.dataset import NORMAL_TYPE, OSADDataset
from ahl_plugins.data.protocols import Split, make_split
from ahl_plugins.errors import DataError

NORMAL_DIGITS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
ANOMALY_DIGITS: tuple[int, ...] = (7, 8, 9)
DEMO_SEEN_TYPE = "digit_7"
DEMO_N_ANOMALIES = 10


def digit_type(digit: int) -> str:
    return f"digit_{int(digit)}"


def load_digits_osad(
    normal_digits: Sequence[int] = NORMAL_DIGITS,
    anomaly_digits: Sequence[int] | None = ANOMALY_DIGITS,
    *,
    name: str = "digits",
) -> OSADDataset:
    """The digits as vectors: ``normal_digits`` normal, ``anomaly_digits`` typed ``digit_<k>``.

    ``anomaly_digits=None`` takes every digit not listed as normal.
    """
    from sklearn.datasets import load_digits

    normal = sorted({int(d) for d in normal_digits})
    anomalous = sorted({int(d) for d in (anomaly_digits if anomaly_digits is not None else range(10))} - set(normal))
    wrong = [d for d in (*normal, *anomalous) if not 0 <= d <= 9]
    if wrong:
        raise DataError(f"digits are 0-9, got {wrong}")
    if not normal:
        raise DataError("choose at least one normal digit")
    if not anomalous:
        raise DataError("choose at least one anomaly digit not among the normal ones")
    overlap = set(normal) & {int(d) for d in (anomaly_digits or ())}
    if overlap:
        raise DataError(f"digits {sorted(overlap)} cannot be both normal and anomalous")

    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float32) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    keep = np.flatnonzero(np.isin(y, normal + anomalous))
    digits = y[keep]
    labels = np.isin(digits, anomalous).astype(np.int64)
    types = np.where(labels == 1, np.char.add("digit_", digits.astype(str)), NORMAL_TYPE)
    return OSADDataset(
        name=name,
        input_kind="vector",
        inputs=X[keep],
        labels=labels,
        types=types,
        ids=[f"row:{i}" for i in keep],
        partition=np.full(keep.size, "any"),
        feature_names=[f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
        info={
            "source": "sklearn.datasets.load_digits",
            "layout": "digits",
            "normal_digits": normal,
            "anomaly_digits": anomalous,
            "scaling": "grey level / 16",
        },
    )


def make_demo_split(
    seed: int = 0,
    dataset: OSADDataset | None = None,
    *,
    n_anomalies: int = DEMO_N_ANOMALIES,
    seen_type: str = DEMO_SEEN_TYPE,
) -> Split:
    """The demo's hard-setting split: ``n_anomalies`` labelled ``seen_type`` digits, test on the other types."""
    return make_split(
        dataset if dataset is not None else load_digits_osad(),
        setting="hard",
        n_anomalies=n_anomalies,
        anomaly_type=seen_type,
        seed=seed,
    )
