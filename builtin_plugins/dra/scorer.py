"""The DRA scorer (Ding et al., CVPR 2022): four heads for disentangled abnormalities, plus a distance head.

- ``normal``: holistic normality, global average pool -> FC (C-256-1) -> ``|·|``;
  high for normals (the loss trains it that way), so the anomaly score subtracts it.
- ``seen``: seen abnormality, 1×1 conv -> ``|·|`` -> top-k MIL over positions.
- ``pseudo``: pseudo abnormality, same form as ``seen``, trained on pseudo anomalies.
- ``residual``: latent residual abnormality: (reference minus the sample's map)
  -> conv3×3 + GroupNorm + ReLU -> 1×1 conv -> ``|·|`` -> top-k MIL. The reference
  is by default the mean of the sample's nearest training normals (so the
  residual says how far the sample is from the normal data around it); the
  paper's form, the mean of 5 random normals, is ``residual_reference="random_mean"``.
- ``distance`` (``distance_head``, on by default): no parameters, the label-free "how far from
  the nearest normals" signal. On maps (``distance_form="patch"``, the default) per position the
  distance to the nearest patch of a coreset memory of the training normals' patches
  (``ahl_plugins.features.patch_memory``; a training normal's own patches left out), top-k pooled:
  PatchCore's signal as a DRA head; on vectors, and on maps with ``distance_form="pooled"``, the
  residual's length.

Before they are combined, the heads are calibrated on the training normals
(``calibrate``; ``head_calibration=False`` restores the raw sum); ``combine="confident"`` adds the
labelled heads to the distance head only beyond ``confident_spreads`` spreads.

On vectors every head is an MLP ``D -> hidden -> 1`` ending in ``|·|`` like the
map heads (``vector_head_output="linear"``: the earlier linear output); the
residual head reads ``reference - sample``.
Multi-scale features are scored per scale and averaged; one set of heads
serves all scales when they have the same width (see ``heads.shares_heads``).

Two deliberate deviations from the authors' code, both so that the heads are
pure functions of (parameters, buffers, features), which the AHL learner's
``functional_call`` / ``vmap`` and reproducible scoring need:

- The reference normals are drawn once, in ``prepare``, with the given
  generator, and their per-scale mean is a buffer; DRA re-draws them from
  every training batch.
- The residual head normalises with ``GroupNorm`` instead of ``BatchNorm``:
  GroupNorm has no running statistics to update in place and scores each
  sample independently of its batch, in training and at test time alike.
  No dropout in the normality head, for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.errors import DataError
from ahl_plugins.features.patch_memory import SearchMemo
from builtin_plugins.dra import DRAOptions
from builtin_plugins.dra.heads import DRAScoreHeads, ResidualMapHead, residual_length
from builtin_plugins.dra.neighbours import DISTANCE, PatchDistance, nearest_normal_mean
from builtin_plugins.heads import (
    ConvTopKHead,
    check_features,
    check_map_features,
    shares_heads,
)

HEAD_NAMES = ("normal", "seen", "pseudo", "residual")


class DRAScorer(PatchDistance, nn.Module):
    """DRA heads over one or more feature scales; see the module docstring."""

    head_names: tuple[str, ...] = HEAD_NAMES
    # registered buffers (see __init__)
    reference_rows: torch.Tensor
    reference_excluded: torch.Tensor
    head_center: torch.Tensor
    head_scale: torch.Tensor

    def __init__(self, spec: FeatureSpec, options: DRAOptions | None = None) -> None:
        super().__init__()
        options = options or DRAOptions()
        self.spec = spec
        self.options = options
        self.n_references = options.n_references
        self.nearest = options.residual_reference == "nearest"
        self.head_names = HEAD_NAMES + ((DISTANCE,) if options.distance_head else ())
        self.patch_distance = options.distance_head and options.distance_form == "patch" and spec.kind == "map"
        self.shared = shares_heads(spec)
        widths = spec.channels[:1] if self.shared else spec.channels
        self.heads = nn.ModuleList([DRAScoreHeads(spec.kind, c, options) for c in widths])
        for scale in range(spec.n_scales):
            # Empty until ``prepare``: the mean reference (C×H×W or D), or with ``nearest`` the bank of
            # normals (N×C×H×W or N×D); shapes are only known from data.
            self.register_buffer(self._reference_name(scale), torch.empty(0))
            if self.patch_distance:
                # the patch memory (M×C), the training image each patch comes from (M,), those images' pooled
                # vectors (N×C, to recognise a training normal and skip its own patches); empty until ``prepare``
                for name in self._patch_names(scale):
                    self.register_buffer(name, torch.empty(0))
        # AHL's per-task restriction of the bank (``task_buffers``); empty: the whole bank. Not saved.
        self.register_buffer("reference_excluded", torch.empty(0), persistent=False)
        # which training normals (rows given to ``prepare``) the bank holds; empty when not prepared. Not saved.
        self.register_buffer("reference_rows", torch.empty(0, dtype=torch.long), persistent=False)
        # head calibration (identity until ``calibrate``): score_h -> (score_h - center_h) / scale_h
        self.register_buffer("head_center", torch.zeros(len(self.head_names)))
        self.register_buffer("head_scale", torch.ones(len(self.head_names)))
        # the patch searches already made against the patch memory (speed only, never saved)
        self.search_memo = SearchMemo()

    @property
    def reference_normals(self) -> int:
        """How many training normals ``prepare`` keeps: the bank (vectors up to ``reference_bank_size``, maps up
        to 256, each a whole map), or the ``n_references`` averaged. A trainer that computes the normals'
        features itself (end-to-end fine-tuning) passes this many."""
        if not self.nearest:
            return self.n_references
        return (
            self.options.reference_bank_size
            if self.spec.kind == "vector"
            else min(256, self.options.reference_bank_size)
        )

    @staticmethod
    def _reference_name(scale: int) -> str:
        return f"reference_{scale}"

    def reference(self, scale: int) -> torch.Tensor:
        return getattr(self, self._reference_name(scale))

    @property
    def prepared(self) -> bool:
        return all(self.reference(s).numel() > 0 for s in range(self.spec.n_scales))

    def forward(
        self, features: Sequence[torch.Tensor], fixed: Mapping[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Every head's score per sample; ``fixed``: heads :meth:`fixed_heads` already computed for these samples."""
        check_features(self.spec, features, "DRA scorer")
        fixed = fixed or {}
        if not self.prepared:
            raise DataError(
                "DRA scorer has no reference normals yet: call scorer.prepare(normal_features, generator) "
                "before training or scoring (the base and AHL trainers do this)"
            )
        per_head: dict[str, list[torch.Tensor]] = {name: [] for name in self.head_names}
        for scale, x in enumerate(features):
            heads = self._scale_heads(scale)
            reference = self.reference(scale)
            per_sample = reference.shape[1:] if self.nearest else reference.shape
            if per_sample != x.shape[1:]:
                raise DataError(
                    f"DRA scorer: scale {scale} features have shape {tuple(x.shape[1:])} per sample but the "
                    f"reference normals have {tuple(per_sample)}; score with the same extractor and "
                    "image size the model was trained with"
                )
            per_head["normal"].append(heads.normal(x))
            per_head["seen"].append(heads.seen(x))
            per_head["pseudo"].append(heads.pseudo(x))
            residual = self._residual(scale, x)
            if DISTANCE in per_head and self.patch_distance:
                # no loss reads the parameter-free head, so training batches skip its search (zeros)
                if DISTANCE not in fixed:
                    per_head[DISTANCE].append(x.new_zeros(x.shape[0]) if self.training else self._patch_score(scale, x))
            elif DISTANCE in per_head:
                per_head[DISTANCE].append(residual_length(residual, self.options.topk_ratio))
            per_head["residual"].append(heads.residual(self._residual_input(residual)))
        out = {name: torch.stack(scores).mean(dim=0) for name, scores in per_head.items() if scores}
        for name, value in fixed.items():
            if tuple(value.shape) != (features[0].shape[0],):
                raise DataError(
                    f"DRA scorer: fixed head {name!r} has shape {tuple(value.shape)} for a batch of "
                    f"{features[0].shape[0]} samples; pass fixed_heads() of exactly these samples"
                )
            out[name] = value
        return out

    def head_maps(self, features: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Per scale, the seen, pseudo and residual heads' per-position scores (``B×H×W``, the maps their
        top-k MIL pools), the distance head's per-position residual length (when on) and the holistic
        normality score (``(B,)``, constant over the image)."""
        check_map_features(self.spec, features, "DRA scorer")
        if not self.prepared:
            raise DataError("DRA scorer has no reference normals yet: prepare (fit) it before asking for maps")
        maps = []
        for scale, x in enumerate(features):
            heads = self._scale_heads(scale)
            seen, pseudo, residual_head = heads.seen, heads.pseudo, heads.residual
            # feature maps (checked above) get the map heads, which score every position
            assert isinstance(seen, ConvTopKHead) and isinstance(pseudo, ConvTopKHead)
            assert isinstance(residual_head, ResidualMapHead)
            residual = self._residual(scale, x)
            scale_maps = {
                "normal": heads.normal(x),
                "seen": seen.position_scores(x),
                "pseudo": pseudo.position_scores(x),
                "residual": residual_head.position_scores(self._residual_input(residual)),
            }
            if DISTANCE in self.head_names and self.patch_distance:
                scale_maps[DISTANCE] = self._patch_map(scale, x)
            elif DISTANCE in self.head_names:
                scale_maps[DISTANCE] = residual.norm(dim=1)  # B×H×W; its top-k mean is residual_length
            maps.append(scale_maps)
        return maps

    def _residual(self, scale: int, x: torch.Tensor) -> torch.Tensor:
        """Anchor minus sample at ``scale``: the nearest normals' mean (``nearest``) or the random-mean
        reference. ``forward`` and ``head_maps`` both read it here, so maps pool to the head scores
        (tests/maps/test_maps.py checks that)."""
        reference = self.reference(scale)
        if self.nearest:
            anchor = nearest_normal_mean(x, reference, self.options.n_neighbors, self.reference_excluded)
        else:
            anchor = reference.unsqueeze(0)
        return anchor - x

    def _residual_input(self, residual: torch.Tensor) -> torch.Tensor:
        """What the residual head reads: the residual, or on vectors its ``|·|`` when ``vector_residual="abs"``."""
        if residual.dim() == 2 and self.options.vector_residual == "abs":
            return residual.abs()
        return residual

    def _scale_heads(self, scale: int) -> DRAScoreHeads:
        """The heads that score scale ``scale`` (one set for every scale when the widths are shared)."""
        heads = self.heads[0 if self.shared else scale]
        assert isinstance(heads, DRAScoreHeads)  # the ModuleList holds nothing else
        return heads

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Anomaly score = seen + pseudo + residual - normality (each averaged over scales, then calibrated);
        ``combine="confident"``: distance + the part of seen, pseudo and residual beyond ``confident_spreads``."""
        z = [(heads[name] - self.head_center[i]) / self.head_scale[i] for i, name in enumerate(self.head_names)]
        normal, seen, pseudo, residual = z[:4]
        if self.options.combine == "confident":
            threshold = self.options.confident_spreads
            return z[4] + sum(torch.relu(h - threshold) for h in (seen, pseudo, residual))
        score = seen + pseudo + residual - normal if self.options.score_normality else seen + pseudo + residual
        return score + z[4] if len(z) > 4 else score

    @torch.no_grad()
    def calibrate(self, normal_features: Sequence[torch.Tensor]) -> None:
        """Fit each head's centre (median) and spread (IQR / 1.349) on the training normals, when enabled.

        The four heads are trained separately and land on different ranges;
        summed raw, the widest one decides the score. Calibrated, each head
        speaks in "spreads of the normals' scores", which needs no labels.
        """
        if not self.options.head_calibration:
            return
        was_training = self.training
        self.eval()
        try:
            n = int(normal_features[0].shape[0])
            parts = [self([f[i : i + 256] for f in normal_features]) for i in range(0, n, 256)]
        finally:
            self.train(was_training)
        self.calibrate_heads({name: torch.cat([p[name] for p in parts]) for name in self.head_names})

    @torch.no_grad()
    def calibrate_heads(self, heads: Mapping[str, torch.Tensor]) -> None:
        """Calibrate from the training normals' head scores (what :meth:`calibrate` computes)."""
        if not self.options.head_calibration:
            return
        for i, name in enumerate(self.head_names):
            values = heads[name].detach().double().cpu()
            q1, median, q3 = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
            spread = (q3 - q1) / 1.349
            floor = max(float(values.std()) if values.numel() > 1 else 0.0, float(values.abs().mean()), 1.0) * 1e-3
            self.head_center[i] = float(median)
            self.head_scale[i] = max(float(spread), floor)

    @torch.no_grad()
    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        """Keep the residual head's reference from the training normals, chosen with ``generator``.

        ``random_mean``: the mean of ``n_references`` random normals per scale.
        ``nearest``: a bank of up to ``reference_bank_size`` normals (all of
        them when fewer) to search for each sample's nearest neighbours.
        """
        check_features(self.spec, normal_features, "DRA scorer (reference normals)")
        n = int(normal_features[0].shape[0])
        if n == 0:
            raise DataError("DRA scorer needs at least one training normal to build its reference")
        order = torch.randperm(n, generator=generator, device=generator.device)
        if self.nearest:
            chosen = torch.sort(order[: min(self.reference_normals, n)]).values
        else:
            chosen = order[: min(self.n_references, n)]
        device = self.reference_rows.device
        self.reference_rows = chosen.to(device) if self.nearest else torch.empty(0, dtype=torch.long, device=device)
        self.reference_excluded = torch.empty(0, device=self.reference_excluded.device)
        for scale, x in enumerate(normal_features):
            picked = x[chosen.to(x.device)]
            value = picked if self.nearest else picked.mean(dim=0)
            setattr(self, self._reference_name(scale), value.detach().clone())
            if self.patch_distance:
                self._prepare_patches(scale, x, generator)

    def task_buffers(self, support_normals: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """``reference_excluded`` per task (``T×R``): 1 on bank rows outside the task's support normals.

        A task's base model then finds its nearest references among the
        normals it adapts on, so its query normals from another cluster look
        as unfamiliar as unseen normals will (AHL's ``task_references="support"``).
        A task with fewer than ``n_neighbors`` + 1 of its normals in the bank
        keeps the whole bank. Empty without a nearest-normal bank.
        """
        if not self.nearest or self.reference_rows.numel() == 0:
            return {}
        rows = self.reference_rows.cpu().numpy()
        masks = []
        for members in support_normals:
            inside = np.isin(rows, np.asarray(members))
            keep = inside if inside.sum() > self.options.n_neighbors else np.ones_like(inside)
            masks.append(torch.from_numpy((~keep).astype(np.float32)))
        return {"reference_excluded": torch.stack(masks).to(self.reference(0).device)}

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
        # The reference buffers are shaped by ``prepare``; take the saved shape so a fresh
        # (unprepared) scorer can load a trained one.
        for scale in range(self.spec.n_scales):
            names = (self._reference_name(scale), *(self._patch_names(scale) if self.patch_distance else ()))
            for name in names:
                key = prefix + name
                if key in state_dict:
                    saved = state_dict[key]
                    current = getattr(self, name)
                    setattr(self, name, torch.empty(saved.shape, dtype=current.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)
