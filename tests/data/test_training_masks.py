"""Ground-truth masks of labelled training anomalies, and pseudo anomalies' masks, as training reads them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ahl_plugins.data.folder import load_folder
from ahl_plugins.data.masks import MASK_GRID, pool_mask
from ahl_plugins.errors import DataError
from ahl_plugins.features.pseudo import PseudoImages, make_pseudo_masks
from ahl_plugins.fitting import seen_training_masks


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def tree(root: Path, *, defect_size: tuple[int, int] = (20, 30)) -> Path:
    """MVTec layout: 4 normals, 3 scratches (two with masks: a block in the top-left / bottom-right quarter)."""
    rng = np.random.default_rng(0)
    for i in range(4):
        write(root / "train" / "good" / f"{i}.png", rng.integers(0, 255, (20, 30), dtype=np.uint8))
    write(root / "test" / "good" / "0.png", rng.integers(0, 255, (20, 30), dtype=np.uint8))
    for i in range(3):
        write(root / "test" / "scratch" / f"{i}.png", rng.integers(0, 255, (20, 30), dtype=np.uint8))
    top_left = np.zeros(defect_size, np.uint8)
    top_left[:3, :4] = 255
    bottom_right = np.zeros((20, 30), np.uint8)
    bottom_right[-2:, -3:] = 255
    write(root / "ground_truth" / "scratch" / "0_mask.png", top_left)
    write(root / "ground_truth" / "scratch" / "1_mask.png", bottom_right)
    return root


def test_loader_masks_reach_training_aligned_with_the_labelled_anomalies(tmp_path):
    ds = load_folder(tree(tmp_path / "cat"))
    seen = np.flatnonzero(ds.labels == 1)
    masks = seen_training_masks(ds.inputs, seen, ds.masks, side=16)
    assert masks is not None and masks.shape == (3, 16, 16)  # squashed to the extractor's 16×16, grid min(64, 16)
    by_name = {ds.inputs[i].stem: masks[j] for j, i in enumerate(seen)}
    assert by_name["0"][0, 0] == 1 and by_name["0"][-1, -1] == 0  # top-left block
    assert by_name["1"][-1, -1] == 1 and by_name["1"][0, 0] == 0  # bottom-right block
    assert torch.isnan(by_name["2"]).all()  # no mask: unknown, not clean
    assert seen_training_masks(ds.inputs, seen, None, side=16) is None


def test_a_mask_of_another_size_than_its_image_is_a_data_error(tmp_path):
    ds = load_folder(tree(tmp_path / "cat", defect_size=(10, 30)))
    with pytest.raises(DataError, match=r"0_mask\.png is 30×10 pixels but its image .*0\.png is 30×20.*Re-export"):
        seen_training_masks(ds.inputs, np.flatnonzero(ds.labels == 1), ds.masks, side=16)


def test_a_mask_for_no_image_is_a_data_error_naming_it(tmp_path):
    root = tree(tmp_path / "cat")
    write(root / "ground_truth" / "scratch" / "7_mask.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(DataError, match=r"7_mask\.png belongs to no image: test/scratch/ has no image named 7.*rename"):
        load_folder(root)
    (root / "ground_truth" / "scratch" / "7_mask.png").unlink()
    write(root / "ground_truth" / "dent" / "0_mask.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(DataError, match="there is no anomaly folder test/dent/"):
        load_folder(root)


def test_masks_must_align_with_the_inputs(tmp_path):
    ds = load_folder(tree(tmp_path / "cat"))
    with pytest.raises(DataError, match="one entry .* per input: got 2 for 8 inputs"):
        seen_training_masks(ds.inputs, np.flatnonzero(ds.labels == 1), ds.masks[:2], side=16)


def test_pool_mask_keeps_small_defects_on_the_grid():
    mask = torch.zeros(1, 1, 256, 256, dtype=torch.bool)
    mask[0, 0, 200, 10] = True
    pooled = pool_mask(mask)
    assert pooled.shape == (1, MASK_GRID, MASK_GRID) and pooled.sum() == 1 and pooled[0, 50, 2] == 1


class Stripe:
    """A tiny image generator: brightens one random row band; the mask says which."""

    domain = "image"
    default = True

    def generate(self, x, pool, generator):
        start = int(torch.randint(0, x.shape[-2] - 2, (), generator=generator))
        mask = torch.zeros(x.shape[0], 1, *x.shape[-2:], dtype=torch.bool)
        mask[..., start : start + 2, :] = True
        return torch.where(mask, torch.ones_like(x), x), mask

    def fingerprint(self) -> str:
        return "stripe"


class Extractor:
    image_size = 16
    input_kind = "image"


def test_pseudo_masks_are_the_generators_masks_of_the_same_samples(tmp_path):
    ds = load_folder(tree(tmp_path / "cat"))
    normals = [p for p, y in zip(ds.inputs, ds.labels, strict=True) if y == 0]
    masks = make_pseudo_masks(Extractor(), Stripe(), normals, 5, seed=3)  # type: ignore[arg-type]
    images = PseudoImages(Stripe(), normals, 16, 3, 32)  # type: ignore[arg-type]
    assert masks.shape == (5, 16, 16)
    for i in range(5):
        image, mask, _ = images.sample(i)
        assert torch.equal(masks[i], mask[0].float())
        assert torch.equal(image[:, mask[0]], torch.ones_like(image[:, mask[0]]))  # the mask is where it changed
    assert torch.equal(make_pseudo_masks(Extractor(), Stripe(), normals, 3, seed=3)[:3], masks[:3])  # type: ignore[arg-type]
    assert not math.isnan(float(masks.sum()))


def test_compare_splits_carry_the_training_anomalies_masks(tmp_path):
    from ahl_plugins.evaluation.compare.splits import split_data
    from ahl_plugins.evaluation.grid import SplitKey

    ds = load_folder(tree(tmp_path / "cat"))
    split = split_data(ds, SplitKey("general", 2, "all", 0))
    assert split.train_masks is not None and len(split.train_masks) == len(split.train_inputs)
    for path, label, mask in zip(split.train_inputs, split.train_labels, split.train_masks, strict=True):
        assert mask == ds.masks[ds.inputs.index(path)]  # each input keeps its own mask (None: normals, unmasked)
        assert label == 1 or mask is None
