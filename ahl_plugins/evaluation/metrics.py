"""AUC-ROC and AUC-PR, the two numbers every OSAD paper reports.

Both are threshold-free, so they need both classes in the test set; a test
set with one class is a broken split, and saying so beats returning NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ahl_plugins.errors import DataError


def _checked(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, where: str
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise DataError(f"{where}: {y.size} labels but {s.size} scores; they must match one to one")
    if y.size and not np.isin(y, (0, 1)).all():
        raise DataError(f"{where}: labels must be 0 (normal) or 1 (anomaly); found {sorted(set(y.tolist()))}")
    n_anomalies = int((y == 1).sum())
    if n_anomalies == 0 or n_anomalies == y.size:
        present = "anomalies" if n_anomalies else "normals"
        raise DataError(
            f"{where}: the test set holds only {present} ({y.size} samples); AUC needs both normals and anomalies. "
            "Check the split: the test part needs test normals and at least one anomaly not used for training"
        )
    if not np.isfinite(s).all():
        bad = np.flatnonzero(~np.isfinite(s))
        raise DataError(
            f"{where}: {bad.size} scores are NaN or infinite (first rows {bad[:5].tolist()}); the model diverged"
        )
    return y.astype(np.int64), s


def auc_roc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (higher scores = more anomalous)."""
    from sklearn.metrics import roc_auc_score

    y, s = _checked(labels, scores, "AUC-ROC")
    return float(roc_auc_score(y, s))


def auc_pr(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the precision-recall curve, as average precision (no trapezoid optimism)."""
    from sklearn.metrics import average_precision_score

    y, s = _checked(labels, scores, "AUC-PR")
    return float(average_precision_score(y, s))


def evaluate(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Both metrics at once: ``{"auc_roc": ..., "auc_pr": ...}``."""
    return {"auc_roc": auc_roc(labels, scores), "auc_pr": auc_pr(labels, scores)}


def roc_points(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates of the ROC curve, for plotting."""
    from sklearn.metrics import roc_curve

    y, s = _checked(labels, scores, "ROC curve")
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr
