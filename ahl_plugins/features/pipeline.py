"""Running a frozen extractor over inputs, through the cache (pseudo-anomaly features: ``features.pseudo``).

Cache granularity: one entry per image (so a later run over a superset of
the images reuses every one already done, and an interrupted run loses at
most one batch), one entry per array for vectors (standardising rows is cheap;
the entry only saves re-reading).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeGuard

import numpy as np
import torch
import torch.nn.functional as F

from ahl_plugins.contracts import FeatureExtractor
from ahl_plugins.data.images import load_image_tensor
from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.errors import DataError
from ahl_plugins.features.cache import FeatureCache, cache_key
from ahl_plugins.features.store import Features

Inputs = Sequence[str | Path] | np.ndarray | torch.Tensor
_LOAD_THREADS = min(4, os.cpu_count() or 1)


# -- identities ------------------------------------------------------------------------
def _is_array(inputs: object) -> TypeGuard[np.ndarray | torch.Tensor]:
    return isinstance(inputs, (np.ndarray, torch.Tensor))


def _as_tensor(inputs: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = torch.as_tensor(inputs)
    return tensor.detach().to("cpu")


def file_identity(path: str | Path, read: ReadSettings = DEFAULT_READ) -> str:
    """Resolved path, size and modification time (changes whenever the file is replaced), and the bit depth
    it is read at: the same 16-bit file read at another depth is another input."""
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    identity = f"file:{resolved}|{stat.st_size}|{stat.st_mtime_ns}"
    return identity if read.bit_depth is None else f"{identity}|bits{read.bit_depth}"


def array_identity(array: np.ndarray | torch.Tensor) -> str:
    """Content hash of an array (dtype, shape and bytes)."""
    tensor = _as_tensor(array).contiguous()
    digest = hashlib.sha256()
    digest.update(f"{tensor.dtype}|{tuple(tensor.shape)}".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return f"array:{digest.hexdigest()}"


def derived_seed(seed: int, *parts: object) -> int:
    digest = hashlib.sha256(repr((int(seed), *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def describe(component: object) -> str:
    return str(getattr(component, "name", None) or type(component).__name__)


# -- image loading -----------------------------------------------------------------------
class ImageSource:
    """Image inputs as ``3×S×S`` tensors in [0, 1], from paths (read with ``read``) or an in-memory batch."""

    def __init__(self, inputs: Inputs, size: int, read: ReadSettings = DEFAULT_READ) -> None:
        self.size = size
        self.read = read
        if _is_array(inputs):
            tensor = _as_tensor(inputs)
            if tensor.dim() != 4 or tensor.shape[1] != 3:
                raise DataError(
                    f"image arrays must be N×3×H×W floats in [0, 1], got shape {tuple(tensor.shape)}; "
                    "pass image paths, or use a vector extractor (e.g. identity) for N×D arrays"
                )
            self.tensor: torch.Tensor | None = tensor.float()
            self.paths: list[Path] = []
        else:
            if isinstance(inputs, (str, Path)):
                raise DataError("inputs must be a list of image paths, not a single path")
            self.tensor = None
            self.paths = [Path(p) for p in inputs]

    def __len__(self) -> int:
        return len(self.tensor) if self.tensor is not None else len(self.paths)

    def identity(self, index: int) -> str:
        if self.tensor is not None:
            return array_identity(self.tensor[index])
        return file_identity(self.paths[index], self.read)

    def load(self, indices: Sequence[int]) -> torch.Tensor:
        if not indices:
            return torch.zeros(0, 3, self.size, self.size)
        if self.tensor is not None:
            batch = self.tensor[list(indices)]
            if tuple(batch.shape[-2:]) != (self.size, self.size):
                batch = F.interpolate(batch, size=(self.size, self.size), mode="bilinear", antialias=True)
            return batch.clamp(0, 1)
        paths = [self.paths[i] for i in indices]
        if len(paths) == 1 or _LOAD_THREADS == 1:
            return torch.stack([load_image_tensor(p, self.size, self.read) for p in paths])
        with ThreadPoolExecutor(_LOAD_THREADS) as pool:  # PIL decodes without the GIL
            return torch.stack(list(pool.map(lambda p: load_image_tensor(p, self.size, self.read), paths)))


def load_images(inputs: Inputs, size: int, read: ReadSettings = DEFAULT_READ) -> torch.Tensor:
    """All ``inputs`` as one ``N×3×S×S`` tensor in [0, 1].

    The same loading and resizing as extraction, so a network trained on these
    images sees at test time exactly what it saw in training.
    """
    source = ImageSource(inputs, int(size), read)
    return source.load(list(range(len(source))))


# -- the batched, cached loop ------------------------------------------------------------
def run_items(
    extractor: FeatureExtractor,
    keys: Sequence[str],
    make_batch: Callable[[Sequence[int]], torch.Tensor],
    *,
    cache: FeatureCache | None,
    batch_size: int,
    device: torch.device,
    progress: bool,
    what: str,
) -> Features:
    """Per-item features: cached ones read back, the rest extracted in batches and stored."""
    n_scales = extractor.spec.n_scales
    results: list[list[torch.Tensor] | None] = [None] * len(keys)
    if cache is not None:
        for i, key in enumerate(keys):
            item = cache.get(key)
            results[i] = item if item is not None and len(item) == n_scales else None
    missing = [i for i, item in enumerate(results) if item is None]
    if missing:
        from tqdm.auto import tqdm

        with tqdm(total=len(missing), desc=what, unit="img", disable=not progress) as bar:
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                outputs = [t.detach().to("cpu") for t in extractor.extract(make_batch(chunk).to(device))]
                if len(outputs) != n_scales or any(t.shape[0] != len(chunk) for t in outputs):
                    raise DataError(
                        f"extractor {describe(extractor)} returned {[tuple(t.shape) for t in outputs]} for a batch "
                        f"of {len(chunk)}; its spec promises {n_scales} tensor(s) with one row per input"
                    )
                for j, i in enumerate(chunk):
                    row = [t[j] for t in outputs]
                    results[i] = row
                    if cache is not None:
                        cache.put(keys[i], row)
                bar.update(len(chunk))
    if not keys:
        return _empty_features(extractor, device)
    done = [item for item in results if item is not None]
    assert len(done) == len(results)  # every item missing from the cache was extracted above
    return Features(tuple(torch.stack([item[s] for item in done]) for s in range(n_scales)))


def image_size_of(extractor: FeatureExtractor) -> int:
    """The side S of the square images an image extractor takes (the contract requires one)."""
    if extractor.image_size is None:
        raise DataError(f"image extractor {describe(extractor)} does not say its input size (image_size)")
    return int(extractor.image_size)


def _empty_features(extractor: FeatureExtractor, device: torch.device) -> Features:
    """Zero-row features with the right trailing shapes (one probe image)."""
    size = image_size_of(extractor)
    probe = torch.zeros(1, 3, size, size, device=device)
    return Features(tuple(t.detach().to("cpu")[:0] for t in extractor.extract(probe)))


def check_batch_size(batch_size: int) -> None:
    if int(batch_size) < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")


def _vector_rows(inputs: Inputs, extractor: FeatureExtractor) -> torch.Tensor:
    if not _is_array(inputs):
        raise DataError(
            f"extractor {describe(extractor)} takes vectors (an N×D array); got {type(inputs).__name__}. "
            "Use an image extractor (e.g. resnet18, efficientnet_lite0) for image paths"
        )
    rows = _as_tensor(inputs)
    if rows.dim() != 2:
        raise DataError(f"vector inputs must be a 2-D array (rows × features), got shape {tuple(rows.shape)}")
    return rows


def extract_features(
    extractor: FeatureExtractor,
    inputs: Inputs,
    *,
    cache: FeatureCache | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = False,
    read: ReadSettings = DEFAULT_READ,
) -> Features:
    """Frozen features of ``inputs`` (image paths, read with ``read``; an ``N×3×H×W`` image batch; or ``N×D``
    vectors), on the CPU."""
    check_batch_size(batch_size)
    device = torch.device(device)
    extractor.to(device)
    if extractor.input_kind == "vector":
        rows = _vector_rows(inputs, extractor)
        key = cache_key("vectors", extractor.fingerprint(), array_identity(rows))
        if cache is not None:
            hit = cache.get(key)
            if hit is not None and len(hit) == extractor.spec.n_scales:
                return Features.of(hit)
        parts = [
            [t.detach().to("cpu") for t in extractor.extract(rows[start : start + batch_size].to(device))]
            for start in range(0, max(len(rows), 1), batch_size)
        ]
        features = Features(tuple(torch.cat([p[s] for p in parts]) for s in range(len(parts[0]))))
        if cache is not None:
            cache.put(key, features.as_list())
        return features

    source = ImageSource(inputs, image_size_of(extractor), read)
    fingerprint = extractor.fingerprint()
    keys = [cache_key("image", fingerprint, source.identity(i)) for i in range(len(source))]
    return run_items(
        extractor,
        keys,
        source.load,
        cache=cache,
        batch_size=batch_size,
        device=device,
        progress=progress,
        what=f"features ({describe(extractor)})",
    )
