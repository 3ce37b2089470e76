"""Pixel AUROC and AUPRO against values computed by hand on tiny masks."""

from __future__ import annotations

import numpy as np
import pytest

from ahl_plugins.errors import DataError
from ahl_plugins.evaluation.pixel import aupro, pixel_auroc, pixel_metrics, pixel_metrics_by_type

# One image, one region of two pixels: positives {0.9, 0.2}, negatives {0.5, 0.1}.
ONE_MAP = [np.array([[0.9, 0.2, 0.5, 0.1]])]
ONE_MASK = [np.array([[1, 1, 0, 0]], dtype=bool)]

# Image A: region 1 = the top row's first two pixels and the 0.1 pixel (3 pixels, 8-connected),
# region 2 = the bottom-right pixel; image B is normal.
A_MAP = np.array([[0.8, 0.8, 0.1], [0.3, 0.2, 0.2], [0.0, 0.0, 0.6]])
A_MASK = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 1]], dtype=bool)
B_MAP = np.array([[0.7, 0.4, 0.0]])
B_MASK = np.zeros((1, 3), dtype=bool)


def test_single_region_by_hand():
    # AUROC: 0.9 beats both negatives, 0.2 beats one of two: 3 of 4 pairs.
    assert pixel_auroc(ONE_MAP, ONE_MASK) == pytest.approx(0.75)
    # Overlap is 1/2 from FPR 0 to 1/2, then 1: area 0.25 + 0.5 over the whole range,
    # and 1/2 · 0.3 / 0.3 up to FPR 0.3.
    assert aupro(ONE_MAP, ONE_MASK, fpr_limit=1.0) == pytest.approx(0.75)
    assert aupro(ONE_MAP, ONE_MASK) == pytest.approx(0.5)


def test_two_regions_and_a_normal_image_by_hand():
    maps, masks = [A_MAP, B_MAP], [A_MASK, B_MASK]
    # Positives 0.8, 0.8, 0.1, 0.6 against 8 negatives: 8 + 8 + 3 + 7 = 26 of 32 pairs.
    assert pixel_auroc(maps, masks) == pytest.approx(26 / 32)
    # Region weights 1/6 (three-pixel region) and 1/2 (one pixel). Curve (FPR, overlap):
    # (0, 1/3) (1/8, 1/3) (1/8, 5/6) ... (5/8, 5/6) (5/8, 1) (1, 1).
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(1 / 24 + 5 / 12 + 3 / 8)
    assert aupro(maps, masks) == pytest.approx((1 / 24 + 5 / 6 * (0.3 - 1 / 8)) / 0.3)
    both = pixel_metrics(maps, masks)
    assert both == {"pixel_auroc": pytest.approx(26 / 32), "pixel_aupro": pytest.approx(0.625)}


def test_region_overlap_weighs_small_defects_like_large_ones():
    # A large region found completely and a one-pixel region missed: pixel AUROC is high, AUPRO is not.
    mask = np.zeros((6, 6), dtype=bool)
    mask[:4, :4] = True
    mask[5, 5] = True
    image_map = np.where(mask, 1.0, 0.5)
    image_map[5, 5] = 0.0
    assert pixel_auroc([image_map], [mask]) > 0.9
    assert aupro([image_map], [mask]) == pytest.approx(0.5)


def test_auroc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 6, size=(7, 5)).astype(float) for _ in range(5)]
    masks = [rng.random((7, 5)) < 0.3 for _ in range(5)]
    expected = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps]))
    assert pixel_auroc(maps, masks) == pytest.approx(expected)


def test_by_type_pairs_each_type_with_the_normals():
    maps = [A_MAP, B_MAP, ONE_MAP[0], np.zeros((2, 2))]
    masks = [A_MASK, None, ONE_MASK[0], None]
    types = ["dent", "normal", "scratch", "scratch"]  # the last scratch has no mask: left out
    out = pixel_metrics_by_type(maps, masks, types)
    assert set(out) == {"all", "dent", "scratch"}
    assert out["dent"] == pixel_metrics([A_MAP, B_MAP], [A_MASK, B_MASK])
    assert out["scratch"] == pixel_metrics([B_MAP, ONE_MAP[0]], [B_MASK, ONE_MASK[0]])


def test_bad_inputs_are_named():
    with pytest.raises(DataError, match="only normal pixels"):
        pixel_auroc([B_MAP], [B_MASK])
    with pytest.raises(DataError, match="same H×W"):
        pixel_auroc([A_MAP], [B_MASK])
    with pytest.raises(DataError, match="NaN"):
        pixel_auroc([np.full((1, 4), np.nan)], ONE_MASK)
    with pytest.raises(DataError, match="2 anomaly maps but 1 masks"):
        pixel_auroc([A_MAP, B_MAP], [A_MASK])
