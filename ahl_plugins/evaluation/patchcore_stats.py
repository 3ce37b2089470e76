"""The SegAD-class labelled reference: map statistics of the PatchCore-class maps, classified with image labels.

The PatchCore-class reference (:mod:`ahl_plugins.evaluation.patchcore`) needs no labels; this row adds the
map-statistics image score of :mod:`ahl_plugins.map_scoring` on top of its per-scale calibrated patch-distance
maps: a logistic classifier on the statistics of each image's maps, fitted on the training normals against the
labelled anomalies. The training normals are scored **leave-one-out**: each against the memory with its own
patches left out (as the reference's calibration already does), so they look as a new normal would. Labelled
anomalies are never in the memory.

Two rows (``ahl compare --references``): ``patchcore_stats`` (the learned score alone, as SegAD) and
``patchcore_floor_stats`` (the PatchCore-class score calibrated on those normals, plus the learned score's
non-negative evidence beyond ``offset``: labels add, never subtract). The maps are PatchCore's, so no pixel
metrics of their own are reported for these rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.errors import DataError
from ahl_plugins.evaluation.patchcore import PatchCoreOptions, PatchMemory, fitted_reference
from ahl_plugins.features.map_statistics import robust_center_spread
from ahl_plugins.map_classifier import MapStatisticsClassifier
from ahl_plugins.map_scoring import MapStatisticsOptions, image_score

BATCH = 32


def calibrated_maps(
    memory: PatchMemory, selected: Sequence[torch.Tensor], owners: torch.Tensor | None = None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per scale, the calibrated ``B×h×w`` patch-distance maps of ``selected`` (the reference's scales), and the
    reference's image scores (mean over scales of the calibrated max); ``owners``: each row's training image,
    whose own patches are left out."""
    n = int(selected[0].shape[0])
    maps: list[list[torch.Tensor]] = [[] for _ in selected]
    scores = []
    for start in range(0, n, BATCH):
        rows = [t[start : start + BATCH] for t in selected]
        who = None if owners is None else owners[start : start + BATCH]
        distances = memory.patch_distances(rows, who)
        calibrated = [(d - memory.center[s]) / memory.spread[s] for s, d in enumerate(distances)]
        for s, m in enumerate(calibrated):
            maps[s].append(m.double())
        scores.append(torch.stack([m.flatten(1).max(dim=1).values for m in calibrated]).mean(dim=0).double())
    return [torch.cat(parts) for parts in maps], torch.cat(scores) if scores else torch.zeros(0)


def labelled_patchcore_scores(
    memory: PatchMemory,
    normal_scales: Sequence[torch.Tensor],
    anomaly_scales: Sequence[torch.Tensor],
    test_scales: Sequence[torch.Tensor],
    form: Literal["learned", "floor_learned"],
    options: MapStatisticsOptions | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Test scores of the labelled row and what was fitted. ``normal_scales`` must be the normals ``memory``
    was fitted on, in the same order (their row is their owner id in the memory)."""
    options = options or MapStatisticsOptions()
    normals = memory.select(normal_scales)
    n = int(normals[0].shape[0])
    rows = torch.arange(n)
    if n > options.max_normals:
        generator = torch.Generator().manual_seed(int(seed))
        rows = torch.sort(torch.randperm(n, generator=generator)[: options.max_normals]).values
    normal_maps, normal_scores = calibrated_maps(memory, [t[rows] for t in normals], owners=rows)
    anomaly_maps, _ = calibrated_maps(memory, memory.select(anomaly_scales))
    classifier = MapStatisticsClassifier(len(normals)).fit(
        normal_maps, anomaly_maps, seed, options.regularization, options.weights
    )
    center, spread = robust_center_spread(normal_scores)
    test_maps, test_scores = calibrated_maps(memory, memory.select(test_scales))
    learned = classifier.learned(classifier.logits(test_maps))
    floor = (test_scores - center) / spread
    scores = image_score(form, floor, learned, options)
    info = {
        "map_statistics": form,
        "n_normals": len(rows),
        "n_anomalies": int(anomaly_maps[0].shape[0]),
        "normals_scored": "leave-one-out (own patches left out of the memory)",
        "coefficients": classifier.coefficients(),
    }
    return scores.double().numpy(), info


def patchcore_stats_reference(
    train_inputs: list,
    train_labels: Sequence[int] | np.ndarray,
    test_inputs: list,
    form: Literal["learned", "floor_learned"],
    *,
    model: str = "dra",
    extractor: str | None = None,
    extractor_options: dict | None = None,
    options: PatchCoreOptions | None = None,
    statistics: MapStatisticsOptions | None = None,
    cache: object = None,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    timings: dict | None = None,
    read: ReadSettings = DEFAULT_READ,
) -> np.ndarray:
    """Scores of ``test_inputs`` by the labelled row ``form``, on the memory the label-free row uses (the same
    extractor, cache and options: :func:`ahl_plugins.evaluation.patchcore.fitted_reference`)."""
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
    if not reference.anomalies:
        raise DataError("the patchcore_stats rows need labelled anomalies (label 1) in the training data")
    fitted = time.perf_counter()
    extract = reference.extract
    normal_scales = extract_features(reference.extractor, reference.normals, **extract).scales
    anomaly_scales = extract_features(reference.extractor, reference.anomalies, **extract).scales
    test_scales = extract_features(reference.extractor, test_inputs, **extract).scales
    scores, info = labelled_patchcore_scores(
        reference.memory,
        normal_scales,
        anomaly_scales,
        test_scales,
        form,
        statistics,
        seed=reference.memory.options.seed,
    )
    if timings is not None:
        timings.update(
            fit=fitted - started,
            score=time.perf_counter() - fitted,
            memory_patches=[len(m) for m in reference.memory.memories],
            map_statistics=info,
        )
    return scores
