"""The PatchCore-class reference on synthetic images with a bright square defect (anomalib-style)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.evaluation.patchcore import (
    PatchCoreOptions,
    PatchMemory,
    as_patches,
    kcenter_greedy,
    nearest_distance,
    patchcore_maps,
    patchcore_reference,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "maps"))
from maps_testkit import HEIGHT, SQUARE, WIDTH, extractor, write_images, write_mask


def noise_maps(n: int, seed: int, size: int = 8, channels: int = 6) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 0.1


def test_defect_scores_higher_and_its_map_peaks_inside_the_square():
    train = noise_maps(20, 0)
    test = noise_maps(4, 1)
    test[2, :, 3:5, 5:7] += 2.0  # a bright 2×2 patch block
    memory = PatchMemory(PatchCoreOptions(coreset_fraction=0.25, sigma=0)).fit([train])
    scores = memory.scores([test])
    assert int(np.argmax(scores)) == 2 and scores[2] > scores[[0, 1, 3]].max() + 5
    (defect_map,) = [m for i, m in enumerate(patchcore_maps(memory, [test], [(8, 8)] * 4)) if i == 2]
    row, col = np.unravel_index(int(np.argmax(defect_map)), defect_map.shape)
    assert 3 <= row <= 4 and 5 <= col <= 6


def test_coreset_keeps_the_fraction_and_covers_the_memory_better_as_it_grows():
    patches = as_patches(noise_maps(30, 2))
    radius = []
    for fraction in (0.02, 0.1, 0.5):
        keep = int(round(fraction * len(patches)))
        index = kcenter_greedy(patches, keep, projection_dim=64, generator=torch.Generator().manual_seed(0))
        assert len(index) == keep and len(set(index.tolist())) == keep
        radius.append(float(nearest_distance(patches, patches[index]).max()))
    assert radius[0] > radius[1] > radius[2]
    # greedy k-center beats a random subset of the same size at covering the memory
    random = torch.randperm(len(patches), generator=torch.Generator().manual_seed(0))[: int(0.1 * len(patches))]
    assert radius[1] < float(nearest_distance(patches, patches[random]).max())


def test_memory_size_follows_the_fraction_per_scale():
    memory = PatchMemory(PatchCoreOptions(coreset_fraction=0.1)).fit([noise_maps(20, 0, 8), noise_maps(20, 0, 4)])
    assert memory.sizes == [1280, 320] and [len(m) for m in memory.memories] == [128, 32]
    # a memory smaller than one image's patches could hold a single image: a left-out image would find none
    small = PatchMemory(PatchCoreOptions(coreset_fraction=0.05)).fit([noise_maps(10, 0, 8)])
    assert len(small.memories[0]) == 65 and bool(np.isfinite(small.center).all())


def test_deterministic_under_a_seed():
    train, test = [noise_maps(12, 3), noise_maps(12, 4, 4)], [noise_maps(5, 5), noise_maps(5, 6, 4)]
    a = PatchMemory(PatchCoreOptions(coreset_fraction=0.2, seed=7)).fit(train).scores(test)
    b = PatchMemory(PatchCoreOptions(coreset_fraction=0.2, seed=7)).fit(train).scores(test)
    c = PatchMemory(PatchCoreOptions(coreset_fraction=0.2, seed=8)).fit(train).scores(test)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_clear_errors_on_vectors_and_bad_options():
    with pytest.raises(DataError, match="feature maps"):
        PatchMemory().fit([torch.randn(10, 16)])
    with pytest.raises(DataError, match="vectors"):
        patchcore_reference(np.zeros((4, 3)), [0, 0, 0, 0], np.zeros((2, 3)))
    with pytest.raises(InvalidOptionsError, match="coreset_fraction"):
        PatchCoreOptions(coreset_fraction=0)
    with pytest.raises(InvalidOptionsError, match="scales"):
        PatchMemory(PatchCoreOptions(scales=(3,))).fit([noise_maps(4, 0)])
    with pytest.raises(DataError, match="not fitted"):
        PatchMemory().patch_distances([noise_maps(2, 0)])


def test_end_to_end_on_an_image_folder_with_pixel_metrics(tmp_path):
    normals, _ = write_images(tmp_path / "normal", 16, seed=0, defect=False)
    good, _ = write_images(tmp_path / "test_good", 4, seed=2, defect=False)
    bad, corners = write_images(tmp_path / "test_bad", 4, seed=3, defect=True)
    masks = [None] * len(good)
    for path, corner in zip(bad, corners, strict=True):
        write_mask(tmp_path / "masks" / path.name, corner)
        masks.append(tmp_path / "masks" / path.name)
    timings: dict = {}
    scores, pixel = patchcore_reference(
        normals,
        [0] * len(normals),
        good + bad,
        extractor=extractor(),
        test_masks=masks,
        test_types=["normal"] * 4 + ["square"] * 4,
        options=PatchCoreOptions(coreset_fraction=0.5),
        timings=timings,
    )
    assert scores[4:].min() > scores[:4].max()
    assert pixel["all"]["pixel_auroc"] > 0.9 and pixel["square"]["pixel_aupro"] > 0.5
    assert timings["memory_patches"] == [8 * 256, 8 * 64] and HEIGHT * WIDTH > SQUARE**2


def test_rows_on_the_same_training_normals_share_one_memory(tmp_path, monkeypatch):
    """The hard setting's seen types keep a seed's training normals: their rows build the memory once."""
    from ahl_plugins.evaluation import patchcore

    normals, _ = write_images(tmp_path / "train", 6, seed=3, defect=False)
    tests, _ = write_images(tmp_path / "test", 2, seed=4, defect=True)
    built = []
    fit = patchcore.PatchMemory.fit
    monkeypatch.setattr(patchcore.PatchMemory, "fit", lambda self, scales: built.append(1) or fit(self, scales))
    monkeypatch.setattr(patchcore, "_MEMORIES", {})
    options = PatchCoreOptions(coreset_fraction=0.5)
    first, _ = patchcore_reference(normals, [0] * 6, tests, extractor=extractor(), options=options)
    again, _ = patchcore_reference(normals, [0] * 6, tests[:1], extractor=extractor(), options=options)
    assert len(built) == 1 and np.allclose(again, first[:1])
    patchcore_reference(normals[:5], [0] * 5, tests, extractor=extractor(), options=options)
    assert len(built) == 2  # other normals, another memory
