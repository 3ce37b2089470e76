"""Pseudo-anomaly features: training normals corrupted by an image generator and run through the extractor
(cached per sample, like real images), or vector generators acting on standardised features; and the masks of
what each image generator changed, aligned with the features.

Sample ``i`` of a seed depends only on ``(seed, i)``, the normal set and the generator, so asking for more
samples later reuses the first ones from the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ahl_plugins.contracts import FeatureExtractor, PseudoAnomalyGenerator
from ahl_plugins.data.masks import MASK_GRID, pool_mask
from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.errors import DataError
from ahl_plugins.features.cache import FeatureCache, cache_key
from ahl_plugins.features.pipeline import (
    ImageSource,
    Inputs,
    array_identity,
    check_batch_size,
    derived_seed,
    describe,
    extract_features,
    image_size_of,
    run_items,
)
from ahl_plugins.features.store import Features

#: normals an image generator may borrow from (cut-paste sources, mix partners): memory stays bounded
DEFAULT_POOL_SIZE = 32


def compatible(generator: PseudoAnomalyGenerator, extractor: FeatureExtractor) -> bool:
    """Whether ``generator`` can make pseudo anomalies for ``extractor``'s inputs.

    Image generators corrupt images before extraction; vector generators act
    on the (standardised) features of a vector extractor.
    """
    return getattr(generator, "domain", "image") == getattr(extractor, "input_kind", "image")


def make_pseudo_anomalies(
    extractor: FeatureExtractor,
    generator: PseudoAnomalyGenerator,
    normal_inputs: Inputs | None,
    n: int,
    seed: int,
    *,
    normal_features: Features | None = None,
    cache: FeatureCache | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = False,
    pool_size: int = DEFAULT_POOL_SIZE,
    read: ReadSettings = DEFAULT_READ,
) -> Features:
    """Features of ``n`` pseudo anomalies made from training normals, reproducible for ``seed``.

    Image generators corrupt normals drawn with a seeded generator, borrowing
    from a pool of at most ``pool_size`` other normals (memory stays bounded),
    and the results go through ``extractor`` like real images. Vector
    generators act on ``normal_features`` (computed from ``normal_inputs`` when
    not given), i.e. on standardised features.
    """
    if not compatible(generator, extractor):
        domain = getattr(generator, "domain", "image")
        fitting = "cutpaste, cutmix, draem" if extractor.input_kind == "image" else "feature_swap, feature_shift"
        raise DataError(
            f"pseudo-anomaly generator {describe(generator)} makes {domain} anomalies, but extractor "
            f"{describe(extractor)} takes {extractor.input_kind} inputs; choose a {extractor.input_kind} "
            f"generator (built-in: {fitting})"
        )
    if int(n) < 0:
        raise DataError(f"the number of pseudo anomalies must be >= 0, got {n}")
    check_batch_size(batch_size)
    device = torch.device(device)
    if generator.domain == "vector":
        return _pseudo_vectors(
            extractor, generator, normal_inputs, int(n), int(seed), normal_features, cache, batch_size, device, progress
        )
    if normal_inputs is None:
        raise DataError("image pseudo anomalies need normal_inputs (the training normals' image paths)")
    if not 1 <= int(pool_size) <= 256:
        raise DataError(f"pool_size must be in [1, 256], got {pool_size}")
    extractor.to(device)
    pseudo = PseudoImages(generator, normal_inputs, image_size_of(extractor), int(seed), int(pool_size), read)
    base = cache_key("pseudo-image", extractor.fingerprint(), pseudo.identity())
    keys = [cache_key(base, i) for i in range(int(n))]
    return run_items(
        extractor,
        keys,
        pseudo.batch,
        cache=cache,
        batch_size=batch_size,
        device=device,
        progress=progress,
        what=f"pseudo anomalies ({describe(generator)})",
    )


def make_pseudo_masks(
    extractor: FeatureExtractor,
    generator: PseudoAnomalyGenerator,
    normal_inputs: Inputs,
    n: int,
    seed: int,
    *,
    cache: FeatureCache | None = None,
    pool_size: int = DEFAULT_POOL_SIZE,
    read: ReadSettings = DEFAULT_READ,
) -> torch.Tensor:
    """``n×g×g`` masks (:func:`ahl_plugins.data.masks.pool_mask`) of the ``n`` image pseudo anomalies
    :func:`make_pseudo_anomalies` makes with the same arguments: sample ``i``'s mask is the one its generator
    returned for pseudo anomaly ``i``, so masks and features stay aligned. Cached per sample like the features."""
    if generator.domain != "image":
        raise DataError(f"pseudo-anomaly masks are per pixel: generator {describe(generator)} is not an image one")
    pseudo = PseudoImages(generator, normal_inputs, image_size_of(extractor), int(seed), int(pool_size), read)
    base = cache_key("pseudo-mask", pseudo.identity(), MASK_GRID)
    out = []
    for i in range(int(n)):
        key = cache_key(base, i)
        hit = cache.get(key) if cache is not None else None
        if hit is None or len(hit) != 1:
            hit = [pool_mask(pseudo.sample(i)[1][None], MASK_GRID)[0]]
            if cache is not None:
                cache.put(key, hit)
        out.append(hit[0].float())
    side = min(MASK_GRID, image_size_of(extractor))
    return torch.stack(out) if out else torch.zeros(0, side, side)


class PseudoImages:
    """Pseudo-anomaly image ``i`` of a seed: a corrupted training normal, in [0, 1].

    Sample ``i`` draws its normal and all its randomness from a generator
    seeded by ``(seed, i)``; the borrowing pool is drawn once from ``seed``.
    Public so that the images and masks can be looked at (docs, debugging).
    """

    def __init__(
        self,
        generator: PseudoAnomalyGenerator,
        normal_inputs: Inputs,
        size: int,
        seed: int,
        pool_size: int,
        read: ReadSettings = DEFAULT_READ,
    ) -> None:
        self.generator = generator
        self.source = ImageSource(normal_inputs, size, read)
        self.seed = seed
        count = len(self.source)
        if count == 0:
            raise DataError("cannot make pseudo anomalies without training normals (normal_inputs is empty)")
        order = torch.randperm(count, generator=torch.Generator().manual_seed(derived_seed(seed, "pool")))
        self.pool_indices = sorted(order[: min(pool_size, count)].tolist())
        self._pool: torch.Tensor | None = None

    def identity(self) -> str:
        normals = cache_key(*(self.source.identity(i) for i in range(len(self.source))))
        return cache_key(self.generator.fingerprint(), self.seed, self.source.size, self.pool_indices, normals)

    def _pool_without(self, index: int) -> torch.Tensor:
        if self._pool is None:
            self._pool = self.source.load(self.pool_indices)
        if index in self.pool_indices:
            at = self.pool_indices.index(index)
            return torch.cat([self._pool[:at], self._pool[at + 1 :]])
        return self._pool

    def sample(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(image 3×S×S, mask 1×S×S, index of the normal it came from)``."""
        g = torch.Generator().manual_seed(derived_seed(self.seed, "sample", i))
        index = int(torch.randint(len(self.source), (), generator=g))
        image = self.source.load([index])
        out, mask = self.generator.generate(image, self._pool_without(index), g)
        return out[0].clamp(0, 1), mask[0], index

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.sample(i)[0] for i in indices])


def _pseudo_vectors(
    extractor: FeatureExtractor,
    generator: PseudoAnomalyGenerator,
    normal_inputs: Inputs | None,
    n: int,
    seed: int,
    normal_features: Features | None,
    cache: FeatureCache | None,
    batch_size: int,
    device: torch.device,
    progress: bool,
) -> Features:
    if normal_features is None:
        if normal_inputs is None:
            raise DataError("vector pseudo anomalies need normal_features or normal_inputs")
        normal_features = extract_features(
            extractor, normal_inputs, cache=cache, batch_size=batch_size, device=device, progress=progress
        )
    if len(normal_features) == 0:
        raise DataError("cannot make pseudo anomalies without training normals (no normal features)")
    if any(t.dim() != 2 for t in normal_features.scales):
        raise DataError("vector pseudo-anomaly generators need vector features (N×D per scale)")
    widths = [int(t.shape[1]) for t in normal_features.scales]
    rows = torch.cat([t.detach().to("cpu", torch.float32) for t in normal_features.scales], dim=1)
    key = cache_key("pseudo-vectors", extractor.fingerprint(), generator.fingerprint(), seed, n, array_identity(rows))
    if cache is not None:
        hit = cache.get(key)
        if hit is not None and len(hit) == len(widths):
            return Features.of(hit)
    g = torch.Generator().manual_seed(derived_seed(seed, "vectors"))
    picks = torch.randint(len(rows), (n,), generator=g)
    parts = []
    for start in range(0, n, max(batch_size, 256)):
        out, _ = generator.generate(rows[picks[start : start + max(batch_size, 256)]], rows, g)
        parts.append(out.detach().to("cpu", torch.float32))
    out = torch.cat(parts) if parts else rows[:0]
    features = Features(tuple(torch.split(out, widths, dim=1)))
    features = Features(tuple(t.contiguous() for t in features.scales))
    if cache is not None:
        cache.put(key, features.as_list())
    return features
