"""Extraction through the cache, and pseudo-anomaly features."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ahl_plugins.errors import DataError
from ahl_plugins.features.cache import FeatureCache
from ahl_plugins.features.pipeline import extract_features
from ahl_plugins.features.pseudo import PseudoImages, compatible, make_pseudo_anomalies
from builtin_plugins.extractors import IdentityOptions, TorchvisionOptions
from builtin_plugins.extractors.identity import IdentityExtractor
from builtin_plugins.extractors.torchvision_cnn import TorchvisionExtractor
from builtin_plugins.pseudo_anomalies import (
    make_cutmix,
    make_cutpaste,
    make_draem,
    make_feature_shift,
    make_feature_swap,
)

SMALL = 64  # the tiny_resnet fixture's image size


def _same(a, b) -> bool:
    return a.n_scales == b.n_scales and all(torch.equal(x, y) for x, y in zip(a.scales, b.scales, strict=True))


def _close(a, b) -> bool:
    """Equal up to float rounding: a batch of one may take another conv algorithm than a batch of six."""
    pairs = zip(a.scales, b.scales, strict=True)
    return a.n_scales == b.n_scales and all(torch.allclose(x, y, atol=1e-5, rtol=1e-4) for x, y in pairs)


def test_second_run_does_not_run_the_backbone(tiny_resnet, image_paths, tmp_path, count_calls):
    cache = FeatureCache(tmp_path / "cache")
    counter = count_calls(tiny_resnet)
    first = extract_features(tiny_resnet, image_paths, cache=cache, batch_size=4)
    assert counter.calls == 2 and counter.items == 6
    assert first.spec.channels == (512, 512) and first.scales[0].shape == (6, 512, 2, 2)
    assert first.scales[1].shape == (6, 512, 1, 1) and first.scales[0].device.type == "cpu"
    second = extract_features(tiny_resnet, image_paths, cache=cache, batch_size=4)
    assert counter.calls == 2, "a cached run must not call the backbone"
    assert _same(first, second)
    assert _close(first, extract_features(tiny_resnet, image_paths))  # and the cache changes nothing


def test_superset_reuses_cached_images(tiny_resnet, image_paths, tmp_path, count_calls):
    cache = FeatureCache(tmp_path / "cache")
    extract_features(tiny_resnet, image_paths[:4], cache=cache)
    counter = count_calls(tiny_resnet)
    more = extract_features(tiny_resnet, image_paths, cache=cache)
    assert counter.items == 2 and len(more) == 6


def test_corrupt_entry_is_recomputed(tiny_resnet, image_paths, tmp_path, count_calls):
    cache = FeatureCache(tmp_path / "cache")
    first = extract_features(tiny_resnet, image_paths, cache=cache)
    victim = sorted(cache.directory.rglob("*.safetensors"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    counter = count_calls(tiny_resnet)
    again = extract_features(tiny_resnet, image_paths, cache=cache)
    assert counter.items == 1 and _close(first, again) and len(cache) == 6


def test_changed_file_or_options_miss_the_cache(tiny_resnet, image_paths, tmp_path, count_calls):
    cache = FeatureCache(tmp_path / "cache")
    extract_features(tiny_resnet, image_paths, cache=cache)
    stat = image_paths[0].stat()
    os.utime(image_paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10_000_000))
    counter = count_calls(tiny_resnet)
    extract_features(tiny_resnet, image_paths, cache=cache)
    assert counter.items == 1
    other = TorchvisionExtractor("resnet18", TorchvisionOptions(weights="none", image_size=SMALL, scales=1))
    other_counter = count_calls(other)
    extract_features(other, image_paths, cache=cache)
    assert other_counter.items == 6


def test_image_tensors_and_empty_inputs(tiny_resnet, tmp_path, count_calls):
    images = torch.rand(3, 3, 80, 80, generator=torch.Generator().manual_seed(0))
    cache = FeatureCache(tmp_path)
    features = extract_features(tiny_resnet, images, cache=cache)
    assert len(features) == 3 and features.scales[0].shape[1:] == (512, 2, 2)
    counter = count_calls(tiny_resnet)
    assert _same(features, extract_features(tiny_resnet, images, cache=cache)) and counter.calls == 0
    empty = extract_features(tiny_resnet, [])
    assert len(empty) == 0 and empty.scales[1].shape == (0, 512, 1, 1)


def test_bad_inputs_are_named(tiny_resnet, tmp_path):
    with pytest.raises(DataError, match="not_there.png"):
        extract_features(tiny_resnet, [tmp_path / "not_there.png"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        extract_features(tiny_resnet, [broken])
    with pytest.raises(DataError, match="N×3×H×W"):
        extract_features(tiny_resnet, np.zeros((4, 7)))
    with pytest.raises(DataError, match="batch_size"):
        extract_features(tiny_resnet, [broken], batch_size=0)
    identity = IdentityExtractor()
    identity.fit(np.zeros((3, 2)))
    with pytest.raises(DataError, match="takes vectors"):
        extract_features(identity, [broken])


def test_vectors_are_standardised_and_cached(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.normal(5, 2, size=(200, 4)), rng.normal(50, 2, size=(20, 4))
    identity = IdentityExtractor(IdentityOptions())
    identity.fit(train)
    cache = FeatureCache(tmp_path)
    features = extract_features(identity, train, cache=cache, batch_size=64)
    assert features.spec.kind == "vector" and features.spec.channels == (4,)
    assert torch.allclose(features.scales[0].mean(0), torch.zeros(4), atol=1e-4)
    assert len(cache) == 1 and _same(features, extract_features(identity, train, cache=cache))
    shifted = extract_features(identity, test, cache=cache)
    assert float(shifted.scales[0].mean()) > 10  # test rows do not move the training statistics


def test_compatibility(tiny_resnet):
    identity = IdentityExtractor()
    assert compatible(make_cutpaste(), tiny_resnet) and compatible(make_feature_swap(), identity)
    assert not compatible(make_feature_shift(), tiny_resnet) and not compatible(make_draem(), identity)
    with pytest.raises(DataError, match="built-in: cutpaste, cutmix, draem"):
        make_pseudo_anomalies(tiny_resnet, make_feature_swap(), [], 2, 0)


def test_pseudo_images_are_reproducible_and_change_only_the_mask(image_paths):
    a = PseudoImages(make_cutmix(), image_paths, SMALL, seed=3, pool_size=4)
    b = PseudoImages(make_cutmix(), image_paths, SMALL, seed=3, pool_size=4)
    for i in range(4):
        image, mask, index = a.sample(i)
        again, mask_again, index_again = b.sample(i)
        assert torch.equal(image, again) and torch.equal(mask, mask_again) and index == index_again
        normal = a.source.load([index])[0]
        changed = (image != normal).any(dim=0, keepdim=True)
        assert bool(changed.any()) and not bool((changed & ~mask).any())
    assert len(a.pool_indices) == 4
    c = PseudoImages(make_cutmix(), image_paths, SMALL, seed=4, pool_size=4)
    assert not torch.equal(a.sample(0)[0], c.sample(0)[0])


def test_pseudo_anomaly_features_are_cached_and_extend(tiny_resnet, image_paths, tmp_path, count_calls):
    cache = FeatureCache(tmp_path / "cache")
    first = make_pseudo_anomalies(tiny_resnet, make_cutpaste(), image_paths, 5, seed=0, cache=cache, pool_size=3)
    assert len(first) == 5 and first.spec.channels == (512, 512)
    assert _close(first, make_pseudo_anomalies(tiny_resnet, make_cutpaste(), image_paths, 5, seed=0, pool_size=3))
    counter = count_calls(tiny_resnet)
    again = make_pseudo_anomalies(tiny_resnet, make_cutpaste(), image_paths, 5, seed=0, cache=cache, pool_size=3)
    assert counter.calls == 0 and _same(first, again)
    more = make_pseudo_anomalies(tiny_resnet, make_cutpaste(), image_paths, 7, seed=0, cache=cache, pool_size=3)
    assert counter.items == 2 and _close(first, more[:5])
    other_seed = make_pseudo_anomalies(tiny_resnet, make_cutpaste(), image_paths, 5, seed=1, cache=cache, pool_size=3)
    assert counter.items == 7 and not _same(first, other_seed)
    # Real normals are not pseudo anomalies: the two never share cache entries.
    normals = extract_features(tiny_resnet, image_paths, cache=cache)
    assert not any(torch.equal(normals.scales[0][i], first.scales[0][j]) for i in range(6) for j in range(5))


def test_pseudo_anomalies_depend_on_the_normal_set(tiny_resnet, image_paths, tmp_path, count_calls, make_images):
    cache = FeatureCache(tmp_path / "cache")
    make_pseudo_anomalies(tiny_resnet, make_cutmix(), image_paths, 3, seed=0, cache=cache)
    counter = count_calls(tiny_resnet)
    extra = make_images(tmp_path / "extra", 1, seed=9)
    make_pseudo_anomalies(tiny_resnet, make_cutmix(), image_paths + extra, 3, seed=0, cache=cache)
    assert counter.items == 3
    with pytest.raises(DataError, match="without training normals"):
        make_pseudo_anomalies(tiny_resnet, make_cutmix(), [], 3, seed=0)


def test_vector_pseudo_anomalies(tmp_path):
    rng = np.random.default_rng(1)
    identity = IdentityExtractor()
    train = rng.normal(size=(100, 6))
    identity.fit(train)
    normals = extract_features(identity, train)
    cache = FeatureCache(tmp_path)
    for make in (make_feature_swap, make_feature_shift):
        pseudo = make_pseudo_anomalies(identity, make(), None, 40, seed=2, normal_features=normals, cache=cache)
        assert pseudo.spec == normals.spec and len(pseudo) == 40
        assert _same(pseudo, make_pseudo_anomalies(identity, make(), train, 40, seed=2))  # features computed
        assert not _same(pseudo, make_pseudo_anomalies(identity, make(), None, 40, seed=3, normal_features=normals))
    assert len(cache) == 2


def test_a_file_read_at_another_bit_depth_is_another_cache_entry(tmp_path):
    from PIL import Image

    from ahl_plugins.data.read_settings import ReadSettings
    from ahl_plugins.features.pipeline import file_identity

    path = tmp_path / "deep.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 4000 + 500).astype(np.uint16)).save(path)
    plain = file_identity(path)
    twelve = file_identity(path, ReadSettings(bit_depth=12))
    assert twelve != plain and twelve.startswith(plain)
    assert file_identity(path) == plain  # nothing remembered between calls: the settings are an argument
