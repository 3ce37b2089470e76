from __future__ import annotations

import numpy as np
import pytest
import torch

from ahl_plugins.errors import DataError
from ahl_plugins.evaluation.knn import knn_reference, knn_scores, pooled
from ahl_plugins.features.store import Features


def test_knn_scores_kth_and_mean():
    reference = np.array([[0.0], [1.0], [3.0]])
    queries = np.array([[0.0], [10.0]])
    assert knn_scores(reference, queries, k=2, method="kth") == pytest.approx([1.0, 9.0])
    assert knn_scores(reference, queries, k=2, method="mean") == pytest.approx([0.5, 8.0])
    # k larger than the reference set is capped, chunking changes nothing
    assert knn_scores(reference, queries, k=10, chunk=1) == pytest.approx([3.0, 10.0])


def test_knn_rejects_bad_shapes():
    with pytest.raises(DataError, match="equal width"):
        knn_scores(np.zeros((3, 2)), np.zeros((1, 3)))
    with pytest.raises(DataError, match="at least one training normal"):
        knn_scores(np.zeros((0, 2)), np.zeros((1, 2)))


def test_pooled_averages_maps_and_concatenates_scales():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    vectors = torch.ones(2, 4)
    out = pooled(Features.of([maps, vectors]))
    assert out.shape == (2, 7)
    np.testing.assert_allclose(out[:, :3], maps.mean(dim=(2, 3)).numpy())
    np.testing.assert_allclose(out[:, 3:], 1.0)


def test_knn_reference_uses_the_detectors_standardised_features():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(60, 3)).astype(np.float32) * np.array([1.0, 100.0, 0.01], dtype=np.float32)
    labels = np.zeros(60, dtype=np.int64)
    labels[:5] = 1
    train[:5] += 50.0
    test = rng.normal(size=(20, 3)).astype(np.float32)
    scores = knn_reference(train, labels, test, model="devnet", k=3, cache=None)
    mean, std = train.mean(0), train.std(0)  # the identity extractor standardises on all training rows

    def z(x: np.ndarray) -> np.ndarray:
        return (x - mean) / np.where(std > 0, std, 1)

    expected = knn_scores(z(train[5:]), z(test), k=3)
    np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=1e-4)
