from __future__ import annotations

import numpy as np
import pytest

from ahl_plugins.errors import DataError
from ahl_plugins.evaluation.metrics import auc_pr, auc_roc, evaluate, roc_points


def test_auc_roc_counts_ordered_pairs():
    labels = [0, 0, 1, 1, 0, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9]
    # 9 normal/anomaly pairs; only (0.4 normal > 0.35 anomaly) is misordered
    assert auc_roc(labels, scores) == pytest.approx(8 / 9)


def test_auc_pr_is_average_precision():
    labels = [1, 0, 1, 0]
    scores = [0.9, 0.8, 0.7, 0.1]
    # ranks: anomaly (P=1), normal, anomaly (P=2/3) -> AP = (1 + 2/3) / 2
    assert auc_pr(labels, scores) == pytest.approx((1 + 2 / 3) / 2)
    assert evaluate(labels, scores) == {"auc_roc": auc_roc(labels, scores), "auc_pr": auc_pr(labels, scores)}


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1]])
def test_one_class_test_set_is_a_clear_error(labels):
    with pytest.raises(DataError, match="only (normals|anomalies).*both normals and anomalies"):
        auc_roc(labels, np.arange(len(labels), dtype=float))


def test_length_mismatch_and_nan_scores_are_reported():
    with pytest.raises(DataError, match="3 labels but 2 scores"):
        auc_pr([0, 1, 0], [0.1, 0.2])
    with pytest.raises(DataError, match="NaN or infinite"):
        auc_roc([0, 1], [0.1, float("nan")])


def test_roc_points_end_at_corners():
    fpr, tpr = roc_points([0, 1, 0, 1], [0.1, 0.9, 0.3, 0.2])
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
