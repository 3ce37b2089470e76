"""The on-disk feature cache: location, round trip, atomic writes, corruption treated as a miss."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ahl_plugins.features import cache as cache_module
from ahl_plugins.features.cache import (
    CACHE_ENV,
    FeatureCache,
    cache_key,
    resolve_cache_dir,
)


def _tensors(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 3, 3, generator=g), torch.randn(8, 2, 2, generator=g).half(), torch.arange(5)]


def _entry(cache: FeatureCache, key: str) -> Path:
    return cache.directory / key[:2] / f"{key}.safetensors"


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "from_env"))
    assert resolve_cache_dir(tmp_path / "given") == tmp_path / "given"
    assert resolve_cache_dir(None) == tmp_path / "from_env"
    monkeypatch.delenv(CACHE_ENV)
    import platformdirs

    assert resolve_cache_dir(None) == Path(platformdirs.user_cache_dir("ahl-plugins"))
    assert FeatureCache(tmp_path / "given").root == tmp_path / "given"


def test_keys_are_stable_and_separate_their_parts():
    assert cache_key("a", 1) == cache_key("a", 1)
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert len(cache_key("x")) == 64


def test_round_trip_hit_and_miss(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache_key("item", 1)
    assert cache.get(key) is None and len(cache) == 0
    cache.put(key, _tensors())
    got = cache.get(key)
    assert got is not None and len(got) == 3
    for a, b in zip(got, _tensors(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert key in cache and len(cache) == 1 and cache.size_bytes() > 0
    assert (cache.hits, cache.misses) == (1, 1)
    assert not list(cache.directory.rglob("*.tmp")), "no temporary file may be left behind"


def test_put_replaces_an_entry(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache_key("item")
    cache.put(key, _tensors(0))
    cache.put(key, _tensors(1))
    assert torch.equal(cache.get(key)[0], _tensors(1)[0]) and len(cache) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage", "empty"])
def test_corrupt_entries_read_as_misses_and_are_removed(tmp_path, damage):
    cache = FeatureCache(tmp_path)
    key = cache_key("item", damage)
    cache.put(key, _tensors())
    path = _entry(cache, key)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip_byte":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])  # inside the tensor data
    elif damage == "garbage":
        path.write_bytes(b"not a safetensors file at all")
    else:
        path.write_bytes(b"")
    assert cache.get(key) is None
    assert not path.exists(), "a corrupt entry must be deleted so it is recomputed"
    cache.put(key, _tensors())
    assert cache.get(key) is not None


def test_an_entry_under_the_wrong_name_is_a_miss(tmp_path):
    cache = FeatureCache(tmp_path)
    a, b = cache_key("a"), cache_key("b")
    cache.put(a, _tensors())
    _entry(cache, b).parent.mkdir(parents=True, exist_ok=True)
    os.replace(_entry(cache, a), _entry(cache, b))
    assert cache.get(b) is None


def test_failed_write_leaves_neither_entry_nor_temp_file(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    key = cache_key("item")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        cache.put(key, _tensors())
    monkeypatch.undo()
    assert cache.get(key) is None
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_clear_counts_entries(tmp_path):
    cache = FeatureCache(tmp_path)
    for i in range(4):
        cache.put(cache_key(i), _tensors(i))
    (cache.directory / "ab").mkdir(exist_ok=True)
    (cache.directory / "ab" / ".leftover.tmp").write_bytes(b"x")
    assert len(cache) == 4
    assert cache.clear() == 4
    assert len(cache) == 0 and cache.size_bytes() == 0
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    assert FeatureCache(tmp_path / "never_used").clear() == 0


def test_rejects_non_hex_keys(tmp_path):
    with pytest.raises(ValueError, match="hex"):
        FeatureCache(tmp_path).get("../../etc/passwd")


def test_tensors_sharing_memory_are_stored_separately(tmp_path):
    # An extractor may hand back the same tensor (or overlapping views) for two scales.
    cache = FeatureCache(tmp_path)
    base = torch.arange(12.0).reshape(2, 6)
    key = cache_key("shared")
    cache.put(key, [base, base, base[0]])
    first, second, third = cache.get(key)
    assert torch.equal(first, base) and torch.equal(second, base) and torch.equal(third, base[0])
