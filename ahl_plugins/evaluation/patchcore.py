"""A PatchCore-class label-free reference: nearest normal patch, max over the image.

What an image user would deploy without labels (Roth et al., "Towards Total Recall in Industrial Anomaly
Detection", CVPR 2022, the method anomalib ships as PatchCore), on the very feature maps the detectors see:

1. **memory**: every position of every training normal's map is a patch (one ``C``-vector), per scale;
2. **coreset**: greedy k-center selection keeps ``coreset_fraction`` of them, chosen on a seeded random
   projection (:func:`kcenter_greedy`), so the kept patches cover the memory with the smallest radius;
3. **patch score**: each test patch's Euclidean distance to its nearest memory patch, exact
   (``torch.cdist`` in chunks; :func:`nearest_distance`);
4. **image score**: the max over positions, per scale; scales are combined by the mean of their
   *calibrated* maxima (median 0, robust spread 1 over training normals scored leave-image-out), because raw
   distances of different layers live on different ranges and one layer would otherwise decide alone;
5. **maps**: the same calibrated per-position distances, through :mod:`ahl_plugins.maps` (upsampled,
   averaged over scales, Gaussian-smoothed) like every model's maps, so pixel AUROC / AUPRO come from the
   same code (:mod:`ahl_plugins.evaluation.pixel`).

Deviations from the paper, on purpose: no locally-aware 3×3 neighbourhood aggregation and no re-weighting
by the neighbourhood's density (the features are the extractor's maps as the models see them, so the row
measures what labels add to *those* features); scales are calibrated, not concatenated after resizing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from ahl_plugins.contracts import FeatureExtractor
from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.features.map_statistics import robust_center_spread
from ahl_plugins.features.patch_memory import as_patches, coreset_size, kcenter_greedy, nearest_distance

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

__all__ = [
    "FittedReference",
    "PatchCoreOptions",
    "PatchMemory",
    "as_patches",
    "fitted_reference",
    "kcenter_greedy",
    "nearest_distance",
    "patchcore_maps",
    "patchcore_reference",
]

#: PatchCore's smoothing (sigma 4 px on a 224-px input), expressed per pixel of that input side.
REFERENCE_SIDE = 224


@dataclass(frozen=True)
class PatchCoreOptions:
    """How the reference is built. ``scales``: which extractor scales (indices) to use, None = all."""

    coreset_fraction: float = 0.1
    projection_dim: int = 64  # 112-wide EfficientNet maps: 3x faster selection than unprojected
    scales: tuple[int, ...] | None = None
    seed: int = 0
    sigma: float = 4.0  # map smoothing, in pixels of a 224-px input side
    calibration_images: int = 64
    chunk: int = 2048  # query patches per cdist block

    def __post_init__(self) -> None:
        if not 0 < self.coreset_fraction <= 1:
            raise InvalidOptionsError(f"coreset_fraction must be in (0, 1], got {self.coreset_fraction}")
        if self.projection_dim < 1 or self.chunk < 1 or self.calibration_images < 1:
            raise InvalidOptionsError("projection_dim, chunk and calibration_images must be >= 1")
        if self.sigma < 0:
            raise InvalidOptionsError(f"sigma must be >= 0, got {self.sigma}")


def check_maps(scales: Sequence[torch.Tensor], who: str = "PatchCore") -> None:
    """Patches need positions: every scale must be ``B×C×H×W``."""
    if not scales:
        raise DataError(f"{who} needs at least one feature scale")
    for i, t in enumerate(scales):
        if t.dim() != 4:
            raise DataError(
                f"{who} needs B×C×H×W feature maps, but scale {i} has shape {tuple(t.shape)} (vectors have no "
                "patches); use an image extractor that keeps spatial maps (e.g. efficientnet_lite0, resnet18), or "
                "the pooled k-NN reference for vectors"
            )


class PatchMemory(nn.Module):
    """The fitted reference; also a map-producing scorer for :mod:`ahl_plugins.maps` (one head, ``patch``)."""

    head_names = ("patch",)

    def __init__(self, options: PatchCoreOptions | None = None) -> None:
        super().__init__()
        self.options = options or PatchCoreOptions()
        self.memories: list[torch.Tensor] = []
        self.owners: list[torch.Tensor] = []
        self.sizes: list[int] = []  # patches per scale before the coreset
        self.center = torch.zeros(0)
        self.spread = torch.ones(0)

    def select(self, scales: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The scales this reference uses, in order (``options.scales``, or all)."""
        check_maps(scales)
        chosen = self.options.scales if self.options.scales is not None else tuple(range(len(scales)))
        bad = [s for s in chosen if not 0 <= s < len(scales)]
        if bad or not chosen:
            raise InvalidOptionsError(f"PatchCore scales {list(chosen)}: the extractor has {len(scales)} scale(s)")
        return [scales[s] for s in chosen]

    def fit(self, scales: Sequence[torch.Tensor]) -> PatchMemory:
        """Build each scale's coreset from the training normals' maps, then calibrate the scales."""
        selected = self.select(scales)
        n_images = int(selected[0].shape[0])
        if n_images < 2:
            raise DataError(
                f"PatchCore needs at least 2 training normals (leave-image-out calibration), got {n_images}"
            )
        generator = torch.Generator().manual_seed(int(self.options.seed))
        self.memories, self.owners, self.sizes = [], [], []
        for maps in selected:
            patches = as_patches(maps)
            owner = torch.arange(n_images).repeat_interleave(maps.shape[2] * maps.shape[3])
            keep = coreset_size(len(patches), maps.shape[2] * maps.shape[3], self.options.coreset_fraction)
            index = kcenter_greedy(patches, keep, self.options.projection_dim, generator)
            self.memories.append(patches[index].contiguous())
            self.owners.append(owner[index])
            self.sizes.append(len(patches))
        calib = torch.randperm(n_images, generator=generator)[: self.options.calibration_images]
        self.center = torch.zeros(len(selected))
        self.spread = torch.ones(len(selected))
        raw = self.raw_scores([m[calib] for m in selected], owners=calib)
        for s, values in enumerate(raw):
            self.center[s], self.spread[s] = robust_center_spread(values)
        return self

    @property
    def fitted(self) -> bool:
        return bool(self.memories)

    def patch_distances(
        self, selected: Sequence[torch.Tensor], owners: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Per scale, ``B×H×W`` raw nearest-memory distances (``owners``: each row's training image, left out)."""
        if not self.fitted:
            raise DataError("PatchCore reference is not fitted: call fit(training normal maps) first")
        check_maps(selected)
        if len(selected) != len(self.memories):
            raise DataError(f"PatchCore was fitted on {len(self.memories)} scale(s), got {len(selected)}")
        out = []
        for maps, memory, owner in zip(selected, self.memories, self.owners, strict=True):
            b, c, h, w = maps.shape
            if c != memory.shape[1]:
                raise DataError(f"PatchCore memory has {memory.shape[1]} channels, features have {c}")
            q_owner = None if owners is None else owners.repeat_interleave(h * w)
            d = nearest_distance(
                as_patches(maps), memory, self.options.chunk, q_owner, None if owners is None else owner
            )
            out.append(d.view(b, h, w))
        return out

    def raw_scores(self, selected: Sequence[torch.Tensor], owners: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per scale, each image's max patch distance (uncalibrated)."""
        return [d.flatten(1).max(dim=1).values for d in self.patch_distances(selected, owners)]

    def scores(self, scales: Sequence[torch.Tensor], batch: int = 64) -> np.ndarray:
        """Image scores: the mean over scales of the calibrated max patch distance."""
        selected = self.select(scales)
        out = []
        for start in range(0, int(selected[0].shape[0]), batch):
            raw = self.raw_scores([t[start : start + batch] for t in selected])
            out.append(torch.stack([(r - self.center[s]) / self.spread[s] for s, r in enumerate(raw)]).mean(dim=0))
        return torch.cat(out).double().numpy() if out else np.zeros(0)

    # -- the map part of the Scorer contract (ahl_plugins.maps): one head, calibrated per scale --------------
    def head_maps(self, features: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        distances = self.patch_distances([f.cpu() for f in features])
        return [{"patch": (d - self.center[s]) / self.spread[s]} for s, d in enumerate(distances)]

    def combine(self, heads: dict[str, torch.Tensor]) -> torch.Tensor:
        return heads["patch"]


def patchcore_maps(
    memory: PatchMemory, scales: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]], max_side: int | None = None
):
    """The reference's anomaly maps, one float32 array per image, at ``sizes`` shrunk to ``max_side``."""
    from ahl_plugins.maps import fit_within, iter_maps

    out = [fit_within(size, max_side) for size in sizes]
    sigmas = [memory.options.sigma * o[0] / REFERENCE_SIDE for o in out]
    # PatchMemory is a one-head, parameter-free scorer with head_maps and combine: what iter_maps reads
    return iter_maps(cast("ScorerModule", memory), memory.select(scales), out, sigmas=sigmas, batch_size=16)


#: Memories built in this process, newest last: the hard setting's seen types share a seed's training normals, so
#: their rows reuse one memory instead of rebuilding it per type (minutes each on Magnetic Tile).
_MEMORIES: dict[tuple, PatchMemory] = {}
MEMORIES_KEPT = 8


def _memory_for(
    built: FeatureExtractor, normals: list, options: PatchCoreOptions, extract: dict[str, Any]
) -> PatchMemory:
    """The memory of these normals through this extractor with these options, built once per process."""
    from ahl_plugins.features.pipeline import extract_features, file_identity

    key = (
        built.fingerprint(),
        str(extract["device"]),
        options,
        tuple(file_identity(p, extract["read"]) for p in normals),
    )
    if key not in _MEMORIES:
        _MEMORIES[key] = PatchMemory(options).fit(extract_features(built, normals, **extract).scales)
        while len(_MEMORIES) > MEMORIES_KEPT:
            _MEMORIES.pop(next(iter(_MEMORIES)))
    return _MEMORIES[key]


@dataclass
class FittedReference:
    """What the reference rows share: the built extractor, the memory of the training normals, how features are
    extracted (cache, batch, device, read settings), and the training inputs split by label."""

    extractor: FeatureExtractor
    memory: PatchMemory
    extract: dict[str, Any]
    normals: list
    anomalies: list


def fitted_reference(
    train_inputs: list | np.ndarray,
    train_labels: Sequence[int] | np.ndarray,
    *,
    model: str = "dra",
    extractor: str | FeatureExtractor | None = None,
    extractor_options: dict | None = None,
    options: PatchCoreOptions | None = None,
    cache: object = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    read: ReadSettings = DEFAULT_READ,
) -> FittedReference:
    """The memory of the training normals (``labels == 0``) through the model's extractor, built once per process
    (same extractor and cache as :func:`ahl_plugins.evaluation.knn.knn_reference`)."""
    from ahl_plugins.evaluation.knn import build_extractor

    if isinstance(train_inputs, np.ndarray):
        raise DataError("PatchCore needs images (feature maps with positions); these inputs are vectors")
    if isinstance(extractor, FeatureExtractor):
        built = extractor.to(device)
    else:
        built = build_extractor(model, extractor, "image", extractor_options).to(device)
    labels = np.asarray(train_labels).reshape(-1)
    if len(labels) != len(train_inputs):
        raise DataError(f"PatchCore: {len(train_inputs)} training inputs but {len(labels)} labels")
    normals = [train_inputs[i] for i in np.flatnonzero(labels == 0)]
    anomalies = [train_inputs[i] for i in np.flatnonzero(labels == 1)]
    extract: dict[str, Any] = {
        "cache": cache,
        "batch_size": batch_size,
        "device": device,
        "progress": False,
        "read": read,
    }
    memory = _memory_for(built, normals, options or PatchCoreOptions(), extract)
    return FittedReference(built, memory, extract, normals, anomalies)


def patchcore_reference(
    train_inputs: list | np.ndarray,
    train_labels: Sequence[int] | np.ndarray,
    test_inputs: list | np.ndarray,
    *,
    model: str = "dra",
    extractor: str | FeatureExtractor | None = None,
    extractor_options: dict | None = None,
    options: PatchCoreOptions | None = None,
    cache: object = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    test_masks: Sequence | None = None,
    test_types: Sequence[str] | np.ndarray | None = None,
    timings: dict | None = None,
    read: ReadSettings = DEFAULT_READ,
) -> tuple[np.ndarray, dict[str, dict[str, float]] | None]:
    """Scores of ``test_inputs`` against the training normals' patches, and pixel metrics where masks exist.

    Same extractor and cache as :func:`ahl_plugins.evaluation.knn.knn_reference`; labels only pick the normals.
    """
    import time

    from ahl_plugins.data.masks import image_size
    from ahl_plugins.evaluation.pixel import METRIC_MAX_SIDE, evaluate_maps
    from ahl_plugins.features.pipeline import extract_features

    started = time.perf_counter()
    reference = fitted_reference(
        train_inputs,
        train_labels,
        model=model,
        extractor=extractor,
        extractor_options=extractor_options,
        options=options,
        cache=cache,
        batch_size=batch_size,
        device=device,
        read=read,
    )
    memory = reference.memory
    fitted = time.perf_counter()
    test_scales = extract_features(reference.extractor, test_inputs, **reference.extract).scales
    scores = memory.scores(test_scales)
    scored = time.perf_counter()
    pixel = None
    if test_masks is not None and any(m is not None for m in test_masks):
        sizes = [image_size(p) for p in test_inputs]
        maps = patchcore_maps(memory, test_scales, sizes, METRIC_MAX_SIDE)
        types = (
            [str(t) for t in test_types]
            if test_types is not None
            else ["normal" if m is None else "anomaly" for m in test_masks]
        )
        pixel = evaluate_maps(maps, list(test_masks), types)
    if timings is not None:
        timings.update(
            fit=fitted - started,
            score=scored - fitted,
            maps=time.perf_counter() - scored,
            memory_patches=[len(m) for m in memory.memories],
            patches=list(memory.sizes),
        )
    return scores, pixel
