"""On-disk feature cache: one safetensors file per entry, written atomically.

An entry is whatever list of tensors one key names (the per-scale features
of one image, or of one array). Every file carries its key and a checksum of
its tensors in the safetensors metadata, so a truncated write, a flipped bit
or a file copied under the wrong name reads as a miss (and is deleted)
instead of as wrong features.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from ahl_plugins.atomic import atomic_write_bytes

CACHE_ENV = "AHL_CACHE_DIR"
FORMAT = "ahl-features-1"
_SUBDIR = Path("features") / "v1"
_SUFFIX = ".safetensors"


def resolve_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$AHL_CACHE_DIR``, else the user cache directory."""
    if cache_dir is not None and str(cache_dir).strip():
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ahl-plugins"))


def cache_key(*parts: object) -> str:
    """A stable hex key for an ordered tuple of identity strings."""
    digest = hashlib.sha256()
    for part in parts:
        text = str(part).encode()
        digest.update(len(text).to_bytes(8, "little"))
        digest.update(text)
    return digest.hexdigest()


def _checksum(tensors: Sequence[torch.Tensor]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _own_storage(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copy tensors that share memory with an earlier one (safetensors refuses shared storage)."""
    seen: set[int] = set()
    out = []
    for tensor in tensors:
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out.append(tensor)
    return out


class FeatureCache:
    """Key -> list of tensors, under ``<root>/features/v1/<k[:2]>/<key>.safetensors``."""

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.root = resolve_cache_dir(cache_dir)
        self.directory = self.root / _SUBDIR
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        if not key or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are lowercase hex digests (see cache_key), got {key!r}")
        return self.directory / key[:2] / (key + _SUFFIX)

    def get(self, key: str) -> list[torch.Tensor] | None:
        path = self._path(key)
        if not path.is_file():
            self.misses += 1
            return None
        tensors = self._read(path, key)
        if tensors is None:
            # Corrupt or foreign: drop it so the caller's recomputation replaces it.
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return tensors

    @staticmethod
    def _read(path: Path, key: str) -> list[torch.Tensor] | None:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                meta = handle.metadata() or {}
                count = int(meta.get("count", "-1"))
                names = [f"t{i}" for i in range(count)]
                if meta.get("format") != FORMAT or meta.get("key") != key or set(handle.keys()) != set(names):
                    return None
                tensors = [handle.get_tensor(name) for name in names]
        except Exception:  # noqa: BLE001 - safetensors raises several kinds for a truncated or garbled file
            return None
        if _checksum(tensors) != meta.get("checksum"):
            return None
        return tensors

    def put(self, key: str, tensors: Sequence[torch.Tensor]) -> None:
        from safetensors.torch import save

        path = self._path(key)
        tensors = _own_storage([t.detach().to("cpu").contiguous() for t in tensors])
        if not tensors:
            raise ValueError("a cache entry needs at least one tensor")
        meta = {"format": FORMAT, "key": key, "count": str(len(tensors)), "checksum": _checksum(tensors)}
        payload = save({f"t{i}": t for i, t in enumerate(tensors)}, metadata=meta)
        atomic_write_bytes(path, payload)

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()

    def _files(self, pattern: str = "*" + _SUFFIX) -> Iterator[Path]:
        if self.directory.is_dir():
            yield from self.directory.glob(f"*/{pattern}")

    def clear(self) -> int:
        """Delete every entry (and leftover temporary files); return how many entries went."""
        removed = 0
        for path in list(self._files()):
            path.unlink(missing_ok=True)
            removed += 1
        for path in list(self._files("*.tmp")):
            path.unlink(missing_ok=True)
        if self.directory.is_dir():
            for sub in self.directory.iterdir():
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()
        return removed

    def size_bytes(self) -> int:
        total = 0
        for path in self._files():
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # removed by a concurrent clear
                pass
        return total

    def __len__(self) -> int:
        return sum(1 for _ in self._files())

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.root)!r})"
