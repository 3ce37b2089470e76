"""``fit`` hands the labelled anomalies' ground-truth masks (MVTec ``ground_truth/``) and the image pseudo
anomalies' masks to a loss that takes per-position labels; other models never read them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ahl_plugins.data.folder import load_folder
from ahl_plugins.detector import OSADDetector

SMALL = {"extractor": "resnet18", "extractor_options": {"weights": "none", "image_size": 32}, "use_cache": False}
# the whole patch memory: at 32 px the coarse scale has one position per image, and a 10% memory of 12 images
# would keep one patch, which leave-own-image-out takes away from its image
FAST = {"epochs": 1, "batches_per_epoch": 2, "n_pseudo": 4, "patch_memory_fraction": 1.0}


@pytest.fixture
def masked_tree(tmp_path):
    """Bright squares are the defects; every defect image but one has its mask."""
    rng = np.random.default_rng(1)
    for part, kind, n in (("train", "good", 12), ("test", "good", 2), ("test", "scratch", 4)):
        folder = tmp_path / part / kind
        folder.mkdir(parents=True)
        for i in range(n):
            image = (rng.random((30, 40)) * 60 + 60).astype(np.uint8)
            if kind == "scratch":
                mask = np.zeros_like(image)
                image[5:12, 8:16] = mask[5:12, 8:16] = 250
                if i < 3:
                    (tmp_path / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask).save(tmp_path / "ground_truth" / kind / f"{i:03d}_mask.png")
            Image.fromarray(image).save(folder / f"{i:03d}.png")
    return tmp_path


def test_residual_patch_trains_on_the_folder_masks_when_its_loss_asks(masked_tree):
    data = load_folder(masked_tree)
    train = data.subset(np.flatnonzero((data.partition == "train") | (data.types == "scratch")))
    detector = OSADDetector("residual_patch", **SMALL, **FAST, position_weight=1.0).fit(train)
    summary = detector.fit_info_["position_labels"]
    assert summary["seen"] == 4 and summary["seen_with_mask"] == 3
    assert set(summary["pseudo_with_mask"]) == set(detector.fit_info_["pseudo"])
    assert all(n == FAST["n_pseudo"] for n in summary["pseudo_with_mask"].values())
    assert np.isfinite(detector.decision_function(data.subset(np.flatnonzero(data.partition == "test")))).all()


def test_models_without_position_labels_do_not_read_masks(masked_tree):
    data = load_folder(masked_tree)
    train = data.subset(np.flatnonzero((data.partition == "train") | (data.types == "scratch")))
    broken = [m if m is None else m.with_name("missing_mask.png") for m in train.masks or []]
    detector = OSADDetector("residual_patch", **SMALL, **FAST).fit(train, masks=broken)  # never opened
    assert detector.fit_info_["position_labels"] is None
