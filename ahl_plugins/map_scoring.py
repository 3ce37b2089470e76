"""Map-statistics image scoring (SegAD-class): what a defect's anomaly map looks like, learned from image labels.

An option of every model that draws maps (a scorer with ``head_maps``: DevNet and DRA on feature maps,
residual_patch, the PatchCore-class reference). After the model is trained, per image and per feature scale,
its anomaly map (``combine`` applied position by position to that scale's head maps) is summarised by the
statistics of :mod:`ahl_plugins.features.map_statistics` (max, top-2% / top-10% means, mean, median, share of
positions above the training normals' 99% and 99.9% map quantiles). Those are standardised by the training
normals' median and robust spread (IQR / 1.349), and a small logistic regression (scikit-learn, L2, balanced
classes, lbfgs, fixed seed) is fitted on the training normals against the labelled anomalies. Its logit, in
spreads of the training normals, is the learned score.

Two image scores (``map_statistics``):

- ``learned``: the learned score alone;
- ``floor_learned``: the model's own score, calibrated on the training normals (median 0, spread 1: a
  monotone map, so its ranking is the model's), plus the non-negative part of the learned score beyond
  ``offset`` spreads, times ``weight``. Labels can add evidence but never pull an image below the floor, so
  labels of one defect type cannot sink an unseen type below the model's own ranking.

How the training normals are scored. Where leaving an image out is natural it is done: a nearest-patch map
(residual_patch, DRA's distance head) leaves each training image's own patches out by itself, and the
PatchCore-class reference row (``patchcore_stats`` in ``ahl compare``) scores every training normal against the
other images' patches. Trained heads (DevNet, DRA's heads) are scored **in-sample**: a held-out share would
have to be left out of training (a different, weaker model than the one the option is attached to) or the
heads retrained per fold (the fit cost times the folds). In-sample normals look a little more normal than new
ones, which is what ``offset`` absorbs in the floor form; the labelled anomalies are in-sample either way.

Maps: the classifier says *whether* an image is anomalous, not where. In the floor form a map is the model's
map on the floor's calibrated scale (the learned term adds nothing per position); with ``learned`` alone the
map is the image's score, constant over the image (as residual_patch's ``statistics`` form).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.features.map_statistics import robust_center_spread
from ahl_plugins.map_classifier import MapStatisticsClassifier
from ahl_plugins.maps import has_maps

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule
    from ahl_plugins.features.store import Features

MapStatisticsForm = Literal["off", "learned", "floor_learned"]
#: the head the wrapped scorer adds: the classifier's logit
HEAD = "map_statistics"
#: in spreads below the centre: the learned head's map entry, which adds nothing to the floor
NO_EVIDENCE = 1e6
#: samples per batch when maps are drawn for fitting
BATCH = 64


class MapStatisticsOptions(BaseModel):
    """Options of the map-statistics image score (``map_statistics_options``)."""

    model_config = ConfigDict(extra="forbid")

    offset: float = Field(
        2.0,
        ge=0,
        description="floor_learned: spreads of the training normals the learned score must exceed before it adds "
        "to the floor (the normals it was fitted on spread narrower than new ones)",
    )
    weight: float = Field(1.0, gt=0, description="floor_learned: weight of the learned evidence added to the floor")
    regularization: float = Field(
        1.0, gt=0, description="inverse L2 strength of the logistic regression (scikit-learn's C)"
    )
    weights: Literal["free", "non_negative"] = Field(
        "non_negative",
        description="non_negative: every statistic's weight >= 0 (each statistic grows with the map, so more of it "
        "never makes an image less anomalous; the same loss, L-BFGS-B with bounds) | free: scikit-learn's logistic "
        "regression. Chosen on validation (docs/benchmarks/map_statistics_validation.md): for the learned score "
        "non-negative − free +0.262 [+0.059, +0.465] on ELPV and +0.097 on Magnetic Tile (free weights let a new "
        "defect's extreme statistics score it down)",
    )
    max_normals: int = Field(
        2048, ge=2, description="training normals (a seeded subsample beyond that) the classifier is fitted on"
    )


def require_map_features(kind: str, who: str) -> None:
    """The option needs positions: vectors (tabular rows, pooled embeddings) have none."""
    if kind != "map":
        raise DataError(
            f"map_statistics needs anomaly maps, but {who} works on {kind} features, which have no positions. Fit "
            "it on images with an extractor that keeps spatial maps (efficientnet_lite0, resnet18), or leave "
            "map_statistics='off' (the default)"
        )


def require_map_scorer(scorer: nn.Module, who: str) -> None:
    if not has_maps(scorer):
        raise InvalidOptionsError(
            f"map_statistics needs a scorer that draws anomaly maps, but {who} ({type(scorer).__name__}) has no "
            "head_maps(features) method (an optional part of the Scorer contract, docs/plugins.md). Use a model "
            "that draws maps (devnet, dra, residual_patch on images), add head_maps to the plugin's scorer, or "
            "leave map_statistics='off' (the default)"
        )


def scale_maps(scorer: ScorerModule, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per feature scale, the ``B×h×w`` anomaly map: ``combine`` applied position by position to that scale's
    head maps (a head without extent, ``(B,)``, is constant over the image)."""
    per_scale = scorer.head_maps(list(features))
    if not isinstance(per_scale, (list, tuple)) or len(per_scale) != len(features):
        raise InvalidOptionsError(
            f"{type(scorer).__name__}.head_maps must return one dict of head maps per feature scale "
            f"({len(features)}); map_statistics reads them"
        )
    out = []
    for scale, heads in enumerate(per_scale):
        batch, height, width = int(features[scale].shape[0]), *features[scale].shape[2:]
        shaped = [v for v in heads.values() if v.dim() == 3]
        if shaped:
            height, width = shaped[0].shape[1:]
        full = {
            name: v if v.dim() == 3 else v.reshape(batch, 1, 1).expand(batch, height, width)
            for name, v in heads.items()
        }
        out.append(scorer.combine(full))
    return out


class MapStatisticsScorer(nn.Module):
    """A trained map-drawing scorer with the map-statistics image score on top (see the module docstring).

    Meets the Scorer contract: its heads are the model's heads plus ``map_statistics`` (the classifier's
    logit); ``combine`` makes the image score of ``form``; ``head_maps`` the model's maps (see the module
    docstring). The wrapped scorer is kept whole (``base``), so its own weights load as they were saved.
    """

    floor_center: torch.Tensor
    floor_scale: torch.Tensor

    def __init__(
        self,
        base: ScorerModule,
        n_scales: int,
        form: Literal["learned", "floor_learned"],
        options: MapStatisticsOptions | None = None,
    ) -> None:
        super().__init__()
        require_map_scorer(base, "the model's scorer")
        names = tuple(getattr(base, "head_names", ()))
        if HEAD in names:
            raise InvalidOptionsError(f"{type(base).__name__} already has a head named {HEAD!r}; rename it")
        self.base = base
        self.form = form
        self.options = options or MapStatisticsOptions()
        self.head_names: tuple[str, ...] = (*names, HEAD)
        self.classifier = MapStatisticsClassifier(n_scales)
        self.register_buffer("floor_center", torch.zeros((), dtype=torch.float64))
        self.register_buffer("floor_scale", torch.ones((), dtype=torch.float64))

    @property
    def base_head_names(self) -> tuple[str, ...]:
        return self.head_names[:-1]

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        heads = dict(self.base(list(features)))
        logits = self.classifier.logits(scale_maps(self.base, features))
        return {**heads, HEAD: logits.to(next(iter(heads.values())).dtype)}

    def head_maps(self, features: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        per_scale = self.base.head_maps(list(features))
        batch = int(features[0].shape[0])
        if self.form == "learned":
            value = self.classifier.logits(scale_maps(self.base, features)).float()
        else:
            silent = self.classifier.logit_center - NO_EVIDENCE * self.classifier.logit_scale
            value = torch.full((batch,), float(silent), device=features[0].device)
        return [{**maps, HEAD: value} for maps in per_scale]

    def floor(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The model's own score, calibrated on the training normals (median 0, spread 1)."""
        own = self.base.combine({name: heads[name] for name in self.base_head_names})
        return (own - self.floor_center.to(own.dtype)) / self.floor_scale.to(own.dtype)

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        learned = self.classifier.learned(heads[HEAD])
        if self.form == "learned":
            return learned.to(heads[HEAD].dtype)
        floor = self.floor(heads)
        return image_score(self.form, floor, learned.to(floor.dtype), self.options)


def image_score(
    form: Literal["learned", "floor_learned"], floor: torch.Tensor, learned: torch.Tensor, options: MapStatisticsOptions
) -> torch.Tensor:
    """The image score of ``form`` from the calibrated floor and the learned score (both in spreads of the
    training normals): the learned score alone, or the floor plus its non-negative part beyond ``offset``."""
    if form == "learned":
        return learned
    return floor + options.weight * torch.relu(learned - options.offset)


def _maps_and_scores(
    scorer: ScorerModule, features: Features, device: torch.device | str
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-scale maps (CPU) and the model's own image scores of every sample, eval mode, no autograd."""
    maps: list[list[torch.Tensor]] = []
    scores = []
    was_training = scorer.training
    scorer.to(device).eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(features), BATCH):
                batch = [t[start : start + BATCH].to(device) for t in features.scales]
                scores.append(scorer.combine(scorer(batch)).double().cpu())
                for s, m in enumerate(scale_maps(scorer, batch)):
                    if len(maps) <= s:
                        maps.append([])
                    maps[s].append(m.double().cpu())
    finally:
        scorer.train(was_training)
    return [torch.cat(parts) for parts in maps], torch.cat(scores)


def fit_map_statistics(
    base: ScorerModule,
    normals: Features,
    seen: Features,
    form: Literal["learned", "floor_learned"],
    options: MapStatisticsOptions,
    seed: int,
    device: torch.device | str = "cpu",
) -> tuple[MapStatisticsScorer, dict[str, Any]]:
    """``base`` (trained) with the map-statistics score fitted on its training normals (in-sample, or left out
    where its maps do that themselves; a seeded subsample beyond ``max_normals``) and labelled anomalies."""
    started = time.perf_counter()
    require_map_features(normals.spec.kind, "this model")
    scorer = MapStatisticsScorer(base, normals.spec.n_scales, form, options)
    if len(normals) > options.max_normals:
        generator = torch.Generator().manual_seed(int(seed))
        rows = torch.sort(torch.randperm(len(normals), generator=generator)[: options.max_normals]).values
        normals = normals[rows.numpy()]
    normal_maps, normal_scores = _maps_and_scores(base, normals, device)
    anomaly_maps, _ = _maps_and_scores(base, seen, device) if len(seen) else ([], torch.zeros(0))
    if not len(seen):
        anomaly_maps = [m[:0] for m in normal_maps]
    scorer.classifier.fit(normal_maps, anomaly_maps, seed, options.regularization, options.weights)
    center, spread = robust_center_spread(normal_scores)
    scorer.floor_center.fill_(center)
    scorer.floor_scale.fill_(spread)
    info = {
        "form": form,
        "options": options.model_dump(mode="json"),
        "n_normals": len(normals),
        "n_anomalies": len(seen),
        "normals_scored": "in-sample (trained heads; a nearest-patch map leaves each image's own patches out)",
        "coefficients": scorer.classifier.coefficients(),
        "seconds": time.perf_counter() - started,
    }
    return scorer.to(device).eval(), info
