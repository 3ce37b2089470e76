"""The residual patch scorer: a label-free floor from the normals' patch memory, plus what the labels add.

Per feature scale, every position's nearest patch in a greedy coreset of the training normals' patches (a
training normal's own patches left out, so it is scored as a new image would be). From that search, three
heads per image:

- ``floor`` (no parameters): the max over positions of the nearest-patch distance, calibrated per scale on the
  training normals (median 0, robust spread 1) and averaged over scales: the PatchCore-class score
  (``ahl_plugins.evaluation.patchcore``) inside the model; with ``floor="pooled_knn"``, the mean distance of the
  image's pooled features to its nearest training normals instead (the k-NN reference), calibrated alike;
- ``evidence`` (PRN/BGAD-class): a small per-position head (1×1 or 3×3 conv, ReLU, 1×1 conv) on the residual
  to the nearest normal patch and its length, pooled by top-k multiple-instance learning: where the labelled
  and pseudo anomalies taught it defects are;
- ``statistics`` (SegAD-class): a logistic classifier on statistics of each scale's distance map (max, top-k
  means, mean, median, share above the training normals' patch-distance quantiles), standardised on the
  training normals: what a defect's map looks like, which carries to defect types it never saw.

``combine`` (``image_score``) keeps the floor and adds only the non-negative part of the calibrated learned
heads: with no learned evidence the score *is* the floor, and it is never below it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.errors import DataError
from ahl_plugins.features.map_statistics import (
    STATISTICS,
    THRESHOLD_QUANTILES,
    map_statistics,
    robust_center_spread,
)
from ahl_plugins.features.patch_memory import (
    SearchMemo,
    as_patches,
    coreset_size,
    kcenter_greedy,
    nearest_distances,
    own_images,
)
from builtin_plugins.heads import check_features, check_map_features, topk_mean
from builtin_plugins.residual_patch import ResidualPatchOptions
from builtin_plugins.residual_patch.memory import gather_patches

HEAD_NAMES = ("floor", "evidence", "statistics")
#: calibrated heads, in ``head_center`` / ``head_scale`` order (the floor is calibrated per scale in prepare)
LEARNED = ("evidence", "statistics")
#: in spreads below the centre: a learned head's map entry that adds nothing to the floor
NO_EVIDENCE = 1e6
PROJECTION_DIM = 64  # the coreset's random projection, as the PatchCore-class reference
BUFFERS = ("memory", "owner", "keys", "thresholds", "stat_center", "stat_scale")


class EvidenceHead(nn.Module):
    """Per position: [residual to the nearest normal patch, its length] -> conv -> ReLU -> 1×1 conv -> logit."""

    def __init__(self, channels: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.hidden = nn.Conv2d(channels + 1, hidden, kernel_size=kernel_size, padding=kernel_size // 2)
        self.out = nn.Conv2d(hidden, 1, kernel_size=1)

    def forward(self, residual: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        x = torch.cat([residual, distance.unsqueeze(1)], dim=1)
        return self.out(torch.relu(self.hidden(x))).squeeze(1)


class ResidualPatchScorer(nn.Module):
    """See the module docstring. Feature maps only (``supported_kinds = ("map",)``)."""

    head_names: tuple[str, ...] = HEAD_NAMES
    supported_kinds: tuple[str, ...] = ("map",)
    floor_center: torch.Tensor
    floor_scale: torch.Tensor
    residual_unit: torch.Tensor
    head_center: torch.Tensor
    head_scale: torch.Tensor
    pooled_center: torch.Tensor  # with floor="pooled_knn" only
    pooled_scale: torch.Tensor

    def __init__(self, spec: FeatureSpec, options: ResidualPatchOptions | None = None) -> None:
        super().__init__()
        self.options = options or ResidualPatchOptions()
        if spec.kind != "map":
            raise DataError(
                "the residual_patch scorer needs feature maps (B×C×H×W): it compares every position with the "
                "training normals' patches. Use an image extractor that keeps spatial maps (efficientnet_lite0, "
                "resnet18), or the dra / devnet model for vectors"
            )
        self.spec = spec
        n = spec.n_scales
        #: the evidence head's logits per position, one map per scale (``forward(features, positions=True)``)
        self.position_heads: tuple[str, ...] = tuple(f"evidence_map_{scale}" for scale in range(n))
        self.evidence_heads = nn.ModuleList(
            EvidenceHead(c, self.options.hidden, self.options.kernel_size) for c in spec.channels
        )
        self.classifier = nn.Linear(len(STATISTICS) * n, 1)
        for scale in range(n):
            for name in BUFFERS:  # shaped by prepare
                self.register_buffer(self._name(name, scale), torch.empty(0))
        # per scale: the floor's centre and spread, and the residual's unit (the normals' median patch distance)
        self.register_buffer("floor_center", torch.zeros(n))
        self.register_buffer("floor_scale", torch.ones(n))
        self.register_buffer("residual_unit", torch.ones(n))
        if self.options.floor == "pooled_knn":  # only then, so models saved with the patch floor load unchanged
            self.register_buffer("pooled_center", torch.zeros(()))
            self.register_buffer("pooled_scale", torch.ones(()))
        # the learned heads' calibration on the training normals (identity until ``calibrate``)
        self.register_buffer("head_center", torch.zeros(len(LEARNED)))
        self.register_buffer("head_scale", torch.ones(len(LEARNED)))
        # speed only: the nearest-patch search of samples already searched against this memory (never saved)
        self.search_memo = SearchMemo()

    @staticmethod
    def _name(name: str, scale: int) -> str:
        return f"{name}_{scale}"

    def _buffer(self, name: str, scale: int) -> torch.Tensor:
        value: torch.Tensor = getattr(self, self._name(name, scale))
        return value

    @property
    def prepared(self) -> bool:
        return all(self._buffer("memory", s).numel() > 0 for s in range(self.spec.n_scales))

    def _require_prepared(self) -> None:
        if not self.prepared:
            raise DataError(
                "residual_patch scorer has no patch memory yet: call scorer.prepare(normal_features, generator) "
                "before training or scoring (the base and AHL trainers do this)"
            )

    def _search(self, scale: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory = self._buffer("memory", scale)
        if x.shape[1] != memory.shape[1]:
            raise DataError(
                f"residual_patch scorer: scale {scale} features have {x.shape[1]} channels but the patch memory "
                f"has {memory.shape[1]}; score with the extractor the model was trained with"
            )
        owner, keys = self._buffer("owner", scale).long(), self._buffer("keys", scale)
        return self.search_memo.nearest(x, memory, owner, keys)

    def _scale_heads(self, scale: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(calibrated distance map B×H×W, evidence logits B×H×W, standardised statistics B×7)`` of one scale."""
        distance, index = self._search(scale, x)
        unit = self.residual_unit[scale]
        residual = (x - gather_patches(self._buffer("memory", scale), index, x.dtype)) / unit
        logits = self.evidence_heads[scale](residual, residual.norm(dim=1))
        stats = map_statistics(distance, self._buffer("thresholds", scale))
        stats = (stats - self._buffer("stat_center", scale)) / self._buffer("stat_scale", scale)
        floor_map = (distance - self.floor_center[scale]) / self.floor_scale[scale]
        return floor_map, logits, stats

    def _pooled_distance(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(B,)``: the mean distance of each sample's pooled features (scales concatenated, as the k-NN
        reference pools them) to its ``floor_k`` nearest training normals, its own image left out."""
        keys = [self._buffer("keys", scale) for scale in range(self.spec.n_scales)]
        pooled = torch.cat([x.detach().mean(dim=(2, 3)) for x in features], dim=1)
        own = own_images(features[0].mean(dim=(2, 3)), keys[0])
        k = min(self.options.floor_k, own.shape[1] - 1)
        return nearest_distances(pooled, torch.cat(keys, dim=1), k, exclude=own).mean(dim=1)

    def forward(self, features: Sequence[torch.Tensor], positions: bool = False) -> dict[str, torch.Tensor]:
        """The three heads per sample (see the module docstring); with ``positions=True`` also each scale's
        evidence logits per position (``evidence_map_<scale>``, ``B×H×W``), for a loss that takes per-position
        labels (the ``position_heads`` contract, docs/plugins.md)."""
        check_map_features(self.spec, features, "residual_patch scorer")
        self._require_prepared()
        floors, evidence, stats, maps = [], [], [], {}
        for scale, x in enumerate(features):
            floor_map, logits, scale_stats = self._scale_heads(scale, x)
            floors.append(floor_map.flatten(1).max(dim=1).values)
            evidence.append(topk_mean(logits.flatten(1), self.options.topk_ratio))
            stats.append(scale_stats)
            maps[self.position_heads[scale]] = logits
        floor = torch.stack(floors).mean(dim=0)
        if self.options.floor == "pooled_knn":
            pooled = (self._pooled_distance(features) - self.pooled_center) / self.pooled_scale
            floor = pooled.to(floor.dtype)
        heads = {
            "floor": floor,
            "evidence": torch.stack(evidence).mean(dim=0),
            "statistics": self.classifier(torch.cat(stats, dim=1)).squeeze(-1),
        }
        return {**heads, **maps} if positions else heads

    def head_maps(self, features: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Per scale: the calibrated distance map (``floor``) and the evidence logits per position; ``combine``
        turns them into the map on the image score's scale.

        The statistics classifier says *whether* an image is anomalous, not where: added to a map it would raise
        every pixel of the image alike (normal pixels of a flagged image above defect pixels of another), so its
        map entry is a value that adds nothing (``(B,)``, far below its calibrated centre), except with
        ``image_score="statistics"``, where it is the score itself, constant over the image.
        """
        check_map_features(self.spec, features, "residual_patch scorer")
        self._require_prepared()
        maps = []
        stats, per_scale = [], []
        for scale, x in enumerate(features):
            floor_map, logits, scale_stats = self._scale_heads(scale, x)
            per_scale.append({"floor": floor_map, "evidence": logits})
            stats.append(scale_stats)
        statistics = self.classifier(torch.cat(stats, dim=1)).squeeze(-1)
        if self.options.image_score != "statistics":
            silent = self.head_center[1] - NO_EVIDENCE * self.head_scale[1]
            statistics = torch.full_like(statistics, float(silent))
        for scale_maps in per_scale:
            maps.append({**scale_maps, "statistics": statistics})
        return maps

    def learned_terms(self, heads: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The learned heads in spreads of the training normals (``calibrate``)."""
        return {name: (heads[name] - self.head_center[i]) / self.head_scale[i] for i, name in enumerate(LEARNED)}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The image score of ``image_score``: the floor plus the non-negative part of the chosen learned term(s)
        beyond ``evidence_offset`` spreads (or, for validation, a learned term alone)."""
        form = self.options.image_score
        floor = heads["floor"]
        z = self.learned_terms(heads)
        if form == "floor":
            return floor
        if form in ("statistics", "evidence"):
            return z[form]
        chosen = {"floor_evidence": ("evidence",), "floor_statistics": ("statistics",)}.get(form, LEARNED)
        added = sum(torch.relu(z[name] - self.options.evidence_offset) for name in chosen)
        return floor + self.options.evidence_weight * added

    @torch.no_grad()
    def calibrate(self, normal_features: Sequence[torch.Tensor]) -> None:
        """Put the learned heads in spreads of the training normals (median 0, IQR / 1.349 = 1).

        The normals are scored leave-one-out by the search, but the heads were trained on them, so a new
        normal spreads a little wider: ``evidence_offset`` is the margin for that (chosen on validation).
        """
        n = int(normal_features[0].shape[0])
        parts = [self([f[i : i + 64] for f in normal_features]) for i in range(0, n, 64)]
        for i, name in enumerate(LEARNED):
            values = torch.cat([p[name] for p in parts]).double().cpu()
            center, spread = robust_center_spread(values)
            self.head_center[i] = center
            self.head_scale[i] = spread

    @torch.no_grad()
    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        """Build each scale's patch memory, then calibrate the floor and standardise the map statistics on the
        training normals, each scored with its own patches left out.

        The floor is the PatchCore-class reference's score (``ahl_plugins.evaluation.patchcore.PatchMemory``) of
        the same normals under the same seed: the coresets and the calibration draw from ``generator`` in the
        reference's order (every scale's coreset, then one permutation of the normals whose first
        ``floor_calibration_normals`` calibrate the floor). So what the labels add is measured against exactly the
        label-free score, not against a second draw of it (docs/deviations.md). The ``pooled_knn`` floor is
        calibrated on the same normals.
        """
        check_features(self.spec, normal_features, "residual_patch scorer (training normals)")
        n = int(normal_features[0].shape[0])
        if n < 2:
            raise DataError(
                f"residual_patch scorer needs at least 2 training normals (each is scored against the others' "
                f"patches), got {n}"
            )
        draws = generator
        if generator.device.type != "cpu":  # the coreset and the reference draw on a CPU generator
            seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
            draws = torch.Generator().manual_seed(seed)
        device = self.floor_center.device
        for scale, x in enumerate(normal_features):
            patches = as_patches(x.detach().cpu())
            owner = torch.arange(n).repeat_interleave(x.shape[2] * x.shape[3])
            keep = coreset_size(len(patches), x.shape[2] * x.shape[3], self.options.patch_memory_fraction)
            index = kcenter_greedy(patches, keep, PROJECTION_DIM, draws)
            self._set(scale, "memory", patches[index].to(device=device, dtype=x.dtype).contiguous())
            self._set(scale, "owner", owner[index].to(device))
            self._set(scale, "keys", x.detach().mean(dim=(2, 3)).to(device).clone())
        order = torch.randperm(n, generator=draws)
        n_rows = max(self.options.calibration_normals, self.options.floor_calibration_normals)
        rows = torch.sort(order[:n_rows]).values
        floor_rows = torch.searchsorted(rows, order[: self.options.floor_calibration_normals])
        stat_rows = torch.searchsorted(rows, torch.sort(order[: self.options.calibration_normals]).values)
        for scale, x in enumerate(normal_features):
            sample = x[rows.to(x.device)].to(device)
            distance = torch.cat([self._search(scale, sample[i : i + 64])[0] for i in range(0, len(sample), 64)])
            flat = distance.flatten(1).double().cpu()
            center, spread = robust_center_spread(flat[floor_rows].max(dim=1).values)
            self.floor_center[scale] = center
            self.floor_scale[scale] = spread
            flat, distance = flat[stat_rows], distance[stat_rows.to(distance.device)]
            quantiles = torch.tensor(THRESHOLD_QUANTILES, dtype=torch.float64)
            self._set(scale, "thresholds", torch.quantile(flat.flatten(), quantiles).to(device, x.dtype))
            self.residual_unit[scale] = max(float(flat.median()), 1e-6)
            stats = map_statistics(distance, self._buffer("thresholds", scale)).double().cpu()
            self._set(scale, "stat_center", stats.mean(dim=0).to(device, x.dtype))
            self._set(scale, "stat_scale", stats.std(dim=0).clamp_min(1e-3).to(device, x.dtype))
        if self.options.floor == "pooled_knn":
            calibration = [x[rows[floor_rows].to(x.device)].to(device) for x in normal_features]
            center, spread = robust_center_spread(self._pooled_distance(calibration).cpu())
            self.pooled_center.fill_(float(center))
            self.pooled_scale.fill_(float(spread))
        self.head_center.zero_()
        self.head_scale.fill_(1.0)

    def _set(self, scale: int, name: str, value: torch.Tensor) -> None:
        setattr(self, self._name(name, scale), value)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing: Any,
        unexpected: Any,
        errors: Any,
    ) -> None:
        # the memory buffers are shaped by ``prepare``: take the saved shapes so a fresh scorer loads a fitted one
        for scale in range(self.spec.n_scales):
            for name in BUFFERS:
                key = prefix + self._name(name, scale)
                if key in state_dict:
                    current = self._buffer(name, scale)
                    saved = state_dict[key]
                    self._set(scale, name, torch.empty(saved.shape, dtype=saved.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)
