"""One fit, from coerced inputs to a trained scorer: fine-tuning (optional), features, pseudo anomalies, then the
base loop or AHL. The detector calls :func:`fit_components` and keeps what it returns."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from ahl_plugins.components import Components
from ahl_plugins.contracts import FeatureExtractor, InputKind, takes_position_labels
from ahl_plugins.data.image_stats import batch_stats
from ahl_plugins.data.masks import MASK_GRID, training_mask
from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.devices import resolve_device
from ahl_plugins.errors import DataError
from ahl_plugins.features.cache import FeatureCache, resolve_cache_dir
from ahl_plugins.features.pipeline import extract_features, file_identity, image_size_of, load_images
from ahl_plugins.features.pseudo import DEFAULT_POOL_SIZE, PseudoImages, make_pseudo_anomalies, make_pseudo_masks
from ahl_plugins.features.store import Features
from ahl_plugins.inputs import Inputs
from ahl_plugins.map_scoring import fit_map_statistics, require_map_features, require_map_scorer
from ahl_plugins.profile import DataProfile, build_profile
from ahl_plugins.training.data import TrainingData
from ahl_plugins.training.scoring import score_features

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule


@dataclass
class Runtime:
    """How a detector runs, not what it is: never saved with a model."""

    device: str = "cpu"
    cache_dir: str | None = None
    use_cache: bool = True
    extract_batch_size: int = 32
    progress: bool = False

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def cache(self) -> FeatureCache | None:
        return FeatureCache(resolve_cache_dir(self.cache_dir)) if self.use_cache else None


def features_of(
    extractor: FeatureExtractor, inputs: Inputs, runtime: Runtime, read: ReadSettings = DEFAULT_READ
) -> Features:
    """Features of ``inputs`` (images read with ``read``, through the cache); NaN or infinite features are a
    :class:`DataError`."""
    features = extract_features(
        extractor,
        inputs,
        cache=runtime.cache(),
        batch_size=runtime.extract_batch_size,
        device=runtime.torch_device,
        progress=runtime.progress,
        read=read,
    )
    bad = [i for i, t in enumerate(features.scales) if not torch.isfinite(t).all()]
    if bad:
        rows = torch.nonzero(~torch.isfinite(features.scales[bad[0]].flatten(1)).all(1)).flatten()[:10].tolist()
        raise DataError(f"features contain NaN or infinite values at scale(s) {bad}, rows {rows}; check the inputs")
    return features


@dataclass
class Fitted:
    extractor: FeatureExtractor
    scorer: ScorerModule
    history: Any
    threshold: float
    info: dict[str, Any]
    profile: DataProfile


def fit_components(
    parts: Components,
    runtime: Runtime,
    inputs: Inputs,
    kind: InputKind,
    normal_idx: np.ndarray,
    seen_idx: np.ndarray,
    types: list[str],
    contamination: float,
    read: ReadSettings = DEFAULT_READ,
    encoder: bool = False,
    masks: Sequence[str | Path | None] | None = None,
) -> Fitted:
    """Train the configured model on ``inputs`` (normals at ``normal_idx``, labelled anomalies at ``seen_idx``;
    images read with ``read``), and profile its training data (``encoder``: raw tables go through one).

    ``masks``: one ground-truth mask file (or None) per input; the labelled anomalies' masks, and the image
    pseudo anomalies' masks, are read only when the loss takes per-position labels (docs/plugins.md)."""
    config, resolved = parts.config, parts.resolved
    started = time.perf_counter()
    device = runtime.torch_device
    if config.map_statistics != "off":
        require_map_features("map" if kind == "image" else "vector", f"model {config.model!r} on {kind} inputs")
    extractor = parts.extractor(kind).to(device)
    if kind == "vector":
        extractor.fit(torch.from_numpy(inputs))
    finetuned_scorer, finetuned = None, None
    if config.finetune_backbone:
        finetuned_scorer, finetuned = _finetune(parts, runtime, extractor, kind, inputs, normal_idx, seen_idx, read)
    tuned = time.perf_counter()
    features = features_of(extractor, inputs, runtime, read)
    normals, seen = features[normal_idx], features[seen_idx]
    normal_inputs = [inputs[i] for i in normal_idx] if kind == "image" else inputs[normal_idx]
    pseudo = _pseudo_anomalies(parts, runtime, extractor, kind, normal_inputs, normals, read)
    seen_masks, pseudo_masks = None, {}
    if kind == "image" and takes_position_labels(parts.loss()):
        assert isinstance(inputs, list)  # image inputs are paths
        seen_masks = seen_training_masks(inputs, seen_idx, masks, image_size_of(extractor))
        pseudo_masks = _pseudo_masks(parts, runtime, extractor, normal_inputs, read)
    data = TrainingData(normals, seen, pseudo, tuple(types), seen_masks, pseudo_masks)
    extracted = time.perf_counter()

    scorer = parts.scorer(features.spec)
    if config.map_statistics != "off":  # before training: a model without maps cannot take the option
        require_map_features(features.spec.kind, f"model {config.model!r} with this extractor")
        require_map_scorer(scorer, f"the scorer {resolved.spec.scorer!r} of model {config.model!r}")
    history: dict[str, Any] | list[dict[str, Any]]
    if config.ahl:
        from ahl_plugins.ahl.guard import train_ahl_guarded
        from ahl_plugins.ahl.options import AHLOptions

        assert isinstance(resolved.trainer, AHLOptions)  # resolve() picks AHL's options exactly when config.ahl
        scorer, history = train_ahl_guarded(
            scorer,
            parts.loss(),
            data,
            resolved.trainer,
            seed=config.seed,
            device=device,
            progress=runtime.progress,
            estimator=parts.estimator_factory(),
        )
    elif finetuned_scorer is not None and finetuned is not None:
        scorer, history = finetuned_scorer, finetuned["epochs"]
    else:
        from ahl_plugins.training.base import train_base
        from ahl_plugins.training.options import TrainOptions

        assert isinstance(resolved.trainer, TrainOptions)  # resolve() picks the base loop's options without ahl
        history = train_base(
            scorer, parts.loss(), data, resolved.trainer, seed=config.seed, device=device, progress=runtime.progress
        )
    scorer = scorer.eval()
    map_statistics = None
    if config.map_statistics != "off":
        assert resolved.map_statistics is not None  # resolve() sets it exactly when the option is on
        wrapped, map_statistics = fit_map_statistics(
            scorer, normals, seen, config.map_statistics, resolved.map_statistics, config.seed, device
        )
        scorer = cast("ScorerModule", wrapped)  # meets the Scorer contract (heads, combine, head_maps)
    train_scores = score_features(scorer, normals, batch_size=256, device=device)
    info: dict[str, Any] = {
        "input_kind": kind,
        "feature_spec": {"kind": features.spec.kind, "channels": list(features.spec.channels)},
        "input_dim": int(np.asarray(inputs).shape[1]) if kind == "vector" else None,
        "n_normals": int(len(normal_idx)),
        "n_seen": int(len(seen_idx)),
        "seen_types": {t: types.count(t) for t in sorted(set(types))},
        "pseudo": {name: len(pool) for name, pool in pseudo.items()},
        "position_labels": _position_summary(data) if takes_position_labels(parts.loss()) else None,
        "scorer": resolved.spec.scorer,
        "n_tasks": history.get("n_tasks") if isinstance(history, dict) else None,
        "guard": _guard_summary(history) if config.ahl else None,
        "seconds": {"features": extracted - tuned, "train": time.perf_counter() - extracted},
    }
    if map_statistics is not None:
        info["map_statistics"] = map_statistics
    if finetuned is not None:
        info["seconds"]["finetune"] = tuned - started
        info["finetune"] = {
            "weights": finetuned["weights"],
            "cached": finetuned["cached"],
            "epochs": len(finetuned["epochs"]),
            "final_loss": finetuned["epochs"][-1]["loss"] if finetuned["epochs"] else None,
        }
    threshold = float(np.quantile(train_scores, 1.0 - contamination))
    profile = build_profile(
        kind,
        read if kind == "image" else None,
        batch_stats(inputs, read) if kind == "image" else None,
        train_scores,
        int(np.asarray(inputs).shape[1]) if kind == "vector" else None,
        encoder,
    )
    return Fitted(extractor, scorer, history, threshold, info, profile)


def _position_summary(data: TrainingData) -> dict[str, Any]:
    """How many training anomalies brought a pixel mask to a loss that takes per-position labels."""
    known = 0 if data.seen_masks is None else int((~torch.isnan(data.seen_masks).flatten(1).any(1)).sum())
    return {
        "seen_with_mask": known,
        "seen": len(data.seen),
        "pseudo_with_mask": {name: len(masks) for name, masks in sorted(data.pseudo_masks.items())},
    }


def _guard_summary(history: Any) -> dict[str, Any] | None:
    from ahl_plugins.ahl.guard import guard_summary

    return guard_summary(history)


def _finetune(
    parts: Components,
    runtime: Runtime,
    extractor: FeatureExtractor,
    kind: InputKind,
    inputs: Inputs,
    normal_idx: np.ndarray,
    seen_idx: np.ndarray,
    read: ReadSettings,
) -> tuple[ScorerModule, dict[str, Any]]:
    """Train ``extractor`` end to end with a fresh scorer on images (see ahl_plugins.training.finetune)."""
    from ahl_plugins.training.finetune import (
        finetune_backbone,
        require_finetunable,
        training_identity,
    )

    config = parts.config
    if kind != "image":
        raise DataError(
            "finetune_backbone=True trains an image backbone end to end, but the inputs are vectors; "
            "drop finetune_backbone for tabular data or embeddings"
        )
    require_finetunable(extractor)
    size = image_size_of(extractor)
    normal_inputs = [inputs[i] for i in normal_idx]
    seen_inputs = [inputs[i] for i in seen_idx]
    made = {}
    if config.n_pseudo > 0:
        for name, generator, seed in parts.pseudo_generators(extractor, kind):
            made[name] = PseudoImages(generator, normal_inputs, size, seed, DEFAULT_POOL_SIZE, read)
    n_pseudo = config.n_pseudo * len(made)
    labels = torch.cat([torch.zeros(len(normal_idx)), torch.ones(len(seen_idx)), torch.full((n_pseudo,), 2.0)]).long()

    def images() -> torch.Tensor:  # only when the fine-tuning cache misses
        pseudo = [pool.batch(range(config.n_pseudo)) for _, pool in sorted(made.items())]
        return torch.cat([load_images(normal_inputs, size, read), load_images(seen_inputs, size, read), *pseudo])

    scorer = parts.scorer(extractor.spec)
    identity = training_identity(
        [file_identity(p, read) for p in normal_inputs + seen_inputs],
        labels,
        {name: pool.identity() for name, pool in made.items()},
        {  # the effective options, defaults included: a preset, or a new default, that changes the heads misses
            "model": config.model,
            "scorer": parts.resolved.effective("scorer"),
            "loss": parts.resolved.effective("loss"),
        },
    )
    result = finetune_backbone(
        extractor,
        scorer,
        parts.loss(),
        images,
        labels,
        parts.resolved.finetune,
        seed=config.seed,
        device=runtime.torch_device,
        cache=runtime.cache(),
        cache_identity=identity,
        progress=runtime.progress,
    )
    return scorer, result


def seen_training_masks(
    inputs: Sequence[Path], seen_idx: np.ndarray, masks: Sequence[str | Path | None] | None, side: int
) -> torch.Tensor | None:
    """``n_seen×g×g`` masks of the labelled anomalies (NaN rows where one has none); None when none has one."""
    if masks is None:
        return None
    if len(masks) != len(inputs):
        raise DataError(
            f"masks must give one entry (a mask file or None) per input: got {len(masks)} for {len(inputs)} inputs. "
            "Pass masks aligned with X (None for images without a mask), or leave masks out"
        )
    chosen = [masks[int(i)] for i in seen_idx]
    if all(m is None for m in chosen):
        return None
    side_g = min(MASK_GRID, int(side))
    rows = [
        training_mask(m, inputs[int(i)], side) if m is not None else torch.full((side_g, side_g), float("nan"))
        for i, m in zip(seen_idx, chosen, strict=True)
    ]
    return torch.stack(rows)


def _pseudo_masks(
    parts: Components,
    runtime: Runtime,
    extractor: FeatureExtractor,
    normal_inputs: Any,
    read: ReadSettings,
) -> dict[str, torch.Tensor]:
    """Each image generator's masks of the pseudo anomalies :func:`_pseudo_anomalies` made (same seeds)."""
    n_pseudo = parts.config.n_pseudo
    if n_pseudo == 0:
        return {}
    return {
        name: make_pseudo_masks(extractor, generator, normal_inputs, n_pseudo, seed, cache=runtime.cache(), read=read)
        for name, generator, seed in parts.pseudo_generators(extractor, "image")
    }


def _pseudo_anomalies(
    parts: Components,
    runtime: Runtime,
    extractor: FeatureExtractor,
    kind: InputKind,
    normal_inputs: Any,
    normals: Features,
    read: ReadSettings,
) -> dict[str, Features]:
    generators = parts.pseudo_generators(extractor, kind)
    n_pseudo = parts.config.n_pseudo
    if n_pseudo == 0:
        return {}
    return {
        name: make_pseudo_anomalies(
            extractor,
            generator,
            normal_inputs,
            n_pseudo,
            seed=seed,
            normal_features=normals,
            cache=runtime.cache(),
            batch_size=runtime.extract_batch_size,
            device=runtime.torch_device,
            progress=runtime.progress,
            read=read,
        )
        for name, generator, seed in generators
    }
