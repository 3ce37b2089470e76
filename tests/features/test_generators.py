"""Pseudo-anomaly generators: change only inside the mask, reproducible under a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from ahl_plugins.errors import DataError
from builtin_plugins.pseudo_anomalies import (
    CutPasteOptions,
    DraemOptions,
    FeatureShiftOptions,
    FeatureSwapOptions,
    make_cutmix,
    make_cutpaste,
    make_draem,
    make_feature_shift,
    make_feature_swap,
)
from builtin_plugins.pseudo_anomalies.images import perlin_noise

IMAGE_MAKERS = {"cutpaste": make_cutpaste, "cutmix": make_cutmix, "draem": make_draem}
VECTOR_MAKERS = {"feature_swap": make_feature_swap, "feature_shift": make_feature_shift}


def _images(n: int, seed: int, size: int = 48) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _run(generator, x, pool, seed):
    return generator.generate(x, pool, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(IMAGE_MAKERS))
def test_image_generator_changes_only_inside_mask(name):
    generator = IMAGE_MAKERS[name]()
    x, pool = _images(5, 0), _images(4, 1)
    before = x.clone()
    out, mask = _run(generator, x, pool, 3)
    assert torch.equal(x, before), "generate must not modify its input"
    assert out.shape == x.shape and mask.shape == (5, 1, 48, 48) and mask.dtype == torch.bool
    changed = (out != x).any(dim=1, keepdim=True)
    assert not bool((changed & ~mask).any()), "pixels outside the mask changed"
    assert all(bool(changed[b].any()) for b in range(5)), "every sample must be an anomaly"
    assert float(out.min()) >= 0 and float(out.max()) <= 1


@pytest.mark.parametrize("name", sorted(IMAGE_MAKERS) + sorted(VECTOR_MAKERS))
def test_generators_reproduce_under_a_seed(name):
    if name in IMAGE_MAKERS:
        generator, x, pool = IMAGE_MAKERS[name](), _images(3, 0), _images(4, 1)
    else:
        generator, x, pool = VECTOR_MAKERS[name](), torch.randn(6, 20), torch.randn(30, 20)
    first, second, other = _run(generator, x, pool, 7), _run(generator, x, pool, 7), _run(generator, x, pool, 8)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


def test_cutpaste_patch_sizes_follow_the_options():
    x = _images(20, 2, size=64)
    _, mask = _run(make_cutpaste(), x, x[:0], 0)
    areas = mask.float().mean(dim=(1, 2, 3))
    assert float(areas.min()) >= 0.015 and float(areas.max()) <= 0.16  # 2–15% up to pixel rounding
    _, small = _run(make_cutpaste(CutPasteOptions(area=(0.02, 0.03))), x, x[:0], 0)
    assert float(small.float().mean(dim=(1, 2, 3)).max()) < 0.04


def test_cutpaste_copies_from_the_same_image():
    # A two-colour image with jitter off: pasted pixels must be colours of the image itself.
    x = torch.zeros(4, 3, 32, 32)
    x[:, :, :, 16:] = 1.0
    generator = make_cutpaste(CutPasteOptions(brightness=0, contrast=0, saturation=0, hue=0))
    out, mask = _run(generator, x, x[:0], 1)
    values = set(out.permute(0, 2, 3, 1)[mask[:, 0]].reshape(-1).tolist())
    assert values <= {0.0, 1.0}


def test_cutmix_borrows_from_the_pool():
    x = torch.zeros(6, 3, 32, 32)
    pool = torch.stack([torch.full((3, 32, 32), v) for v in (0.25, 0.5, 0.75)])
    out, mask = _run(make_cutmix(), x, pool, 0)
    for b in range(6):
        inside = out[b][:, mask[b, 0]]
        assert inside.unique().numel() == 1 and float(inside[0, 0]) in (0.25, 0.5, 0.75)
    with pytest.raises(DataError, match="pool is empty"):
        _run(make_cutmix(), x, pool[:0], 0)


def test_draem_blends_a_texture_with_beta_below_the_max(tmp_path):
    textures = tmp_path / "textures"
    textures.mkdir()
    Image.fromarray(np.full((20, 20, 3), 255, dtype=np.uint8)).save(textures / "white.png")
    generator = make_draem(DraemOptions(texture_dir=str(textures)))
    x = torch.zeros(8, 3, 40, 40)
    out, mask = _run(generator, x, None, 0)
    fractions = mask.float().mean(dim=(1, 2, 3))
    assert float(fractions.min()) >= DraemOptions().min_mask_fraction
    for b in range(8):
        inside = out[b][:, mask[b, 0]]
        # out = (1-beta)*1 + beta*0 with beta in [0, 0.8): one value per sample, in (0.2, 1]
        assert inside.unique().numel() == 1 and 0.2 < float(inside[0, 0]) <= 1.0
    assert "dir:" in generator.fingerprint()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no images"):
        make_draem(DraemOptions(texture_dir=str(empty)))


def test_perlin_noise_is_seeded_and_bounded():
    a = perlin_noise(33, 47, (4, 2), torch.Generator().manual_seed(0))
    b = perlin_noise(33, 47, (4, 2), torch.Generator().manual_seed(0))
    assert a.shape == (33, 47) and torch.equal(a, b)
    assert float(a.abs().max()) <= 1.0 + 1e-5 and float(a.std()) > 0.05


@pytest.mark.parametrize("name", sorted(VECTOR_MAKERS))
def test_vector_generator_changes_only_inside_mask(name):
    x, pool = torch.randn(50, 20), torch.randn(100, 20)
    out, mask = _run(VECTOR_MAKERS[name](), x, pool, 0)
    assert mask.shape == x.shape and mask.dtype == torch.bool
    assert not bool(((out != x) & ~mask).any())
    counts = mask.sum(dim=1)
    assert int(counts.min()) >= 2 and int(counts.max()) <= 6  # ceil(0.1*20) .. ceil(0.3*20)
    assert bool((out != x).any(dim=1).all())


def test_feature_swap_takes_values_from_one_donor_and_never_from_itself():
    pool = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 8)  # row r is all r
    out, mask = _run(make_feature_swap(), pool.clone(), pool, 0)
    for r in range(10):
        donor = out[r][mask[r]].unique()
        assert donor.numel() == 1 and float(donor) != r


def test_feature_shift_moves_by_the_asked_number_of_stds():
    pool = torch.randn(2000, 30, generator=torch.Generator().manual_seed(0)) * 3.0
    x = pool[:40]
    out, mask = _run(make_feature_shift(FeatureShiftOptions(magnitude=(2.0, 5.0))), x, pool, 1)
    std = pool.std(dim=0)
    for r in range(40):
        moved = ((out[r] - x[r]) / std)[mask[r]]
        rms = float(moved.square().mean().sqrt())
        assert 2.0 - 1e-4 <= rms <= 5.0 + 1e-4


def test_options_are_validated():
    with pytest.raises(ValidationError):
        CutPasteOptions(aera=(0.1, 0.2))
    with pytest.raises(ValidationError):
        CutPasteOptions(area=(0.3, 0.1))
    with pytest.raises(ValidationError):
        FeatureSwapOptions(fraction=(0.2, 1.5))
    with pytest.raises(ValidationError):
        DraemOptions(perlin_scale=(3, 3))
