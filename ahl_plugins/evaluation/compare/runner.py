"""Running one cell: fit and score a model variant (or the k-NN reference) on its split.

A runner is any picklable callable ``(cell, split_data) -> CellRun``; the
executors ship it to their workers once. :class:`DetectorRunner` is the
default. It can also fill the feature cache before the grid (``warm``), so
that the backbone runs once per data set and extractor instead of once per
cell and worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.evaluation.compare.config import CompareConfig
from ahl_plugins.evaluation.compare.splits import SplitData
from ahl_plugins.evaluation.grid import (
    BASE,
    KNN,
    KTH,
    MEAN,
    PATCH_FORMS,
    PATCHCORE,
    PATCHCORE_FLOOR_STATS,
    PATCHCORE_STATS,
    Cell,
)

if TYPE_CHECKING:
    from ahl_plugins.evaluation.knn import KnnMethod

#: Label prefix of the k-NN rows on a fine-tuned model's features (``knn[fine-tuned dra]``).
FINETUNED_KNN = f"{KNN}[fine-tuned "


@dataclass
class CellRun:
    """What running one cell produced."""

    scores: np.ndarray
    fit_seconds: float
    score_seconds: float
    train_seconds: float | None = None
    history: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    extractor: str = ""
    pixel: dict[str, dict[str, float]] | None = None  # pixel metrics by anomaly type ("all" = every test image)


Runner = Callable[[Cell, SplitData], CellRun]


class DetectorRunner:
    """Fits and scores a cell with :class:`OSADDetector` (or the k-NN reference)."""

    def __init__(self, config: CompareConfig) -> None:
        self.config = config

    def detector_options(self, cell: Cell) -> dict[str, Any]:
        options = dict(self.config.options)
        if self.config.epochs is not None:
            options["epochs"] = self.config.epochs
        kwargs = cell.detector_kwargs()
        if kwargs["ahl"]:
            options.update(self.config.ahl_options)
        options.update({k: v for k, v in kwargs.items() if k != "ahl"})
        if self.config.finetune_backbone:
            from ahl_plugins.training.finetune import finetune_options_like_base

            common = {
                **self.config.options,
                **({"epochs": self.config.epochs} if self.config.epochs is not None else {}),
            }
            options = finetune_options_like_base(options, common, ahl=kwargs["ahl"])
        return options

    def make_detector(self, cell: Cell, seed: int):
        from ahl_plugins.detector import OSADDetector

        return OSADDetector(
            cell.model,
            ahl=cell.detector_kwargs()["ahl"],
            extractor=self.config.extractor,
            seed=seed,
            device=self.config.device,
            cache_dir=self.config.cache_dir,
            extractor_options=dict(self.config.extractor_options),
            **self.detector_options(cell),
        )

    def check(self, cells: Iterable[Cell]) -> None:
        """Build one detector per model variant before anything runs: a misspelt option or
        model fails now, with the detector's message, not once per cell."""
        seen = set()
        for cell in cells:
            if cell.is_knn or (cell.model, cell.variant) in seen:
                continue
            seen.add((cell.model, cell.variant))
            self.make_detector(cell, cell.train_seed)

    def warm(self, inputs: list[Path] | np.ndarray, read: ReadSettings = DEFAULT_READ) -> dict[str, int]:
        """Extract every image of the data set once per extractor into the feature cache.

        Every cell then reads its training and test features from the cache.
        Vector "extraction" is a standardisation fitted per split, so there is
        nothing to share. Returns ``{extractor: images}``.
        """
        if isinstance(inputs, np.ndarray) or self.config.options.get("use_cache") is False:
            return {}
        from ahl_plugins.devices import resolve_device
        from ahl_plugins.evaluation.knn import build_extractor
        from ahl_plugins.features.cache import FeatureCache
        from ahl_plugins.features.pipeline import extract_features

        cache = FeatureCache(self.config.cache_dir)
        done = {}
        for name, model in extractor_models(self.config.models, self.config.extractor, "image").items():
            built = build_extractor(model, self.config.extractor, "image", self.config.extractor_options)
            extract_features(
                built,
                inputs,
                cache=cache,
                batch_size=int(self.config.options.get("extract_batch_size", 32)),
                device=resolve_device(self.config.device),
                progress=False,
                read=read,
            )
            done[name] = len(inputs)
        return done

    def __call__(self, cell: Cell, data: SplitData) -> CellRun:
        if cell.is_knn:
            return self._knn(cell, data)
        detector = self.make_detector(cell, cell.train_seed)
        started = time.perf_counter()
        detector.fit(
            data.train_inputs,
            data.train_labels,
            anomaly_types=list(data.train_types),
            read_settings=data.read,
            masks=data.train_masks,
        )
        fitted = time.perf_counter()
        scores = detector.decision_function(data.test_inputs, check_drift=False)
        scored = time.perf_counter()
        drift = test_normals_drift(detector, data, scores)
        from ahl_plugins.evaluation.pixel import detector_pixel_metrics

        pixel = detector_pixel_metrics(detector, data.test_inputs, data.test_masks, data.test_types)
        seconds = detector.fit_info_.get("seconds", {})
        return CellRun(
            scores=np.asarray(scores, dtype=np.float64),
            fit_seconds=fitted - started,
            score_seconds=scored - fitted,
            train_seconds=seconds.get("train"),
            history=detector.history_,
            info={**detector.fit_info_, **({"data_drift": drift} if drift else {})},
            extractor=extractor_name(cell.model, self.config.extractor, detector.fit_info_.get("input_kind", "vector")),
            pixel=pixel,
        )

    def _knn(self, cell: Cell, data: SplitData) -> CellRun:
        if cell.form in PATCH_FORMS:
            return self._patchcore(cell, data)
        from ahl_plugins.devices import resolve_device
        from ahl_plugins.evaluation.knn import knn_reference
        from ahl_plugins.features.cache import FeatureCache

        timings: dict[str, float] = {}
        model = cell.source_model or self.config.models[0]
        extractor = self.config.extractor
        base_cell = finetuned_base(cell)
        if base_cell is not None:
            # The base model's fine-tuned network (read back from the fine-tuning cache when the base cell ran).
            base = self.make_detector(base_cell, data.key.seed)
            extractor = base.fit(
                data.train_inputs, data.train_labels, anomaly_types=list(data.train_types), read_settings=data.read
            ).extractor_
        scores = knn_reference(
            data.train_inputs,
            data.train_labels,
            data.test_inputs,
            model=model,
            extractor=extractor,
            extractor_options=self.config.extractor_options,
            k=self.config.k,
            method=cast("KnnMethod", cell.form),  # every form but patchcore (handled above) is a k-NN method
            cache=FeatureCache(self.config.cache_dir),
            device=resolve_device(self.config.device),
            timings=timings,
            read=data.read,
        )
        return CellRun(
            scores=scores,
            fit_seconds=timings.get("fit", 0.0),
            score_seconds=timings.get("score", 0.0),
            info={"k": self.config.k, "method": cell.form},
            extractor=extractor_name(model, self.config.extractor, data_kind(data)),
        )

    def _map_statistics_options(self) -> Any:
        """The labelled patch rows take the compare's ``-o map_statistics_options=...``, as every model does."""
        from pydantic import ValidationError

        from ahl_plugins.errors import InvalidOptionsError
        from ahl_plugins.map_scoring import MapStatisticsOptions

        given = self.config.options.get("map_statistics_options") or {}
        try:
            return MapStatisticsOptions(**given)
        except ValidationError as exc:
            raise InvalidOptionsError(f"invalid map_statistics_options:\n{exc}") from None

    def _patchcore(self, cell: Cell, data: SplitData) -> CellRun:
        """The PatchCore-class row: nearest normal patch, with pixel metrics where the test images have masks; or
        one of its labelled forms (map statistics, ahl_plugins.evaluation.patchcore_stats)."""
        from ahl_plugins.devices import resolve_device
        from ahl_plugins.evaluation.patchcore import PatchCoreOptions, patchcore_reference
        from ahl_plugins.evaluation.patchcore_stats import patchcore_stats_reference
        from ahl_plugins.features.cache import FeatureCache

        timings: dict[str, Any] = {}
        model = cell.source_model or self.config.models[0]
        options = PatchCoreOptions(coreset_fraction=self.config.coreset_fraction, seed=data.key.seed)
        shared: dict[str, Any] = {
            "model": model,
            "extractor": self.config.extractor,
            "extractor_options": self.config.extractor_options,
            "options": options,
            "cache": FeatureCache(self.config.cache_dir),
            "device": resolve_device(self.config.device),
            "timings": timings,
            "read": data.read,
        }
        pixel = None
        if cell.form in LABELLED_PATCH_FORMS:  # the maps are the label-free row's: no pixel metrics of their own
            scores = patchcore_stats_reference(
                list(data.train_inputs),
                data.train_labels,
                list(data.test_inputs),
                LABELLED_PATCH_FORMS[cell.form],
                statistics=self._map_statistics_options(),
                **shared,
            )
        else:
            scores, pixel = patchcore_reference(
                data.train_inputs,
                data.train_labels,
                data.test_inputs,
                test_masks=data.test_masks,
                test_types=data.test_types,
                **shared,
            )
        return CellRun(
            scores=scores,
            fit_seconds=timings.get("fit", 0.0),
            score_seconds=timings.get("score", 0.0),
            info={
                "method": cell.form,
                **({"map_statistics": timings["map_statistics"]} if "map_statistics" in timings else {}),
                "coreset_fraction": options.coreset_fraction,
                "memory_patches": timings.get("memory_patches"),
            },
            extractor=extractor_name(model, self.config.extractor, data_kind(data)),
            pixel=pixel,
        )


def test_normals_drift(detector: Any, data: SplitData, scores: np.ndarray) -> list[str]:
    """The drift causes of a cell's test normals against its training data, kept in the cell's info (the driver
    warns: a worker's or Ray task's warning would be lost). Test normals only: a test set is mostly anomalies
    by design, so its median score says nothing about drift."""
    normal = np.flatnonzero(np.asarray(data.test_labels) == 0)
    if not len(normal):
        return []
    inputs = (
        data.test_inputs[normal] if isinstance(data.test_inputs, np.ndarray) else [data.test_inputs[i] for i in normal]
    )
    return detector.drift_report(inputs, np.asarray(scores)[normal]).causes


def data_kind(data: SplitData) -> str:
    return "vector" if isinstance(data.train_inputs, np.ndarray) else "image"


def extractor_name(model: str, extractor: str | None, kind: str) -> str:
    from ahl_plugins.plugins import get_manager

    spec = get_manager().model(model)
    return extractor or (spec.image_extractor if kind == "image" else spec.vector_extractor)


def extractor_models(models: Sequence[str], extractor: str | None, kind: str) -> dict[str, str]:
    """``{extractor name: the first model using it}``, in model order."""
    groups: dict[str, str] = {}
    for model in models:
        groups.setdefault(extractor_name(model, extractor, kind), model)
    return groups


#: row label of each reference form (the kth row keeps the name ``knn`` it always had, so old directories resume)
FORM_LABELS = {
    KTH: KNN,
    MEAN: f"{KNN}[mean]",
    PATCHCORE: PATCHCORE,
    PATCHCORE_STATS: PATCHCORE_STATS,
    PATCHCORE_FLOOR_STATS: PATCHCORE_FLOOR_STATS,
}
#: the map-statistics image score each labelled patch row uses (ahl_plugins.map_scoring)
LABELLED_PATCH_FORMS: dict[str, Literal["learned", "floor_learned"]] = {
    PATCHCORE_STATS: "learned",
    PATCHCORE_FLOOR_STATS: "floor_learned",
}


def knn_rows(
    models: Sequence[str], extractor: str | None, kind: str, forms: Sequence[str] = (KTH,)
) -> list[tuple[str, str, str]]:
    """One reference row per form and distinct extractor among the models: ``(label, model, form)``."""
    groups = extractor_models(models, extractor, kind)
    rows = []
    for form in forms:
        label = FORM_LABELS[form]
        if len(groups) == 1:
            rows.append((label, next(iter(groups.values())), form))
            continue
        for name, model in groups.items():
            inner = label[len(KNN) + 1 : -1] + ", " if label.startswith(f"{KNN}[") else ""
            base = KNN if label.startswith(KNN) else label
            rows.append((f"{base}[{inner}{name}]", model, form))
    return rows


def finetuned_base(cell: Cell) -> Cell | None:
    """The base cell whose fine-tuned network a ``knn[fine-tuned <model>]`` cell reads; None for other cells."""
    if not cell.model.startswith(FINETUNED_KNN):
        return None
    assert cell.source_model is not None  # a fine-tuned k-NN row always names the model it borrows from
    return Cell(cell.split, cell.source_model, BASE)


def finetuned_knn_rows(models: Sequence[str]) -> list[tuple[str, str]]:
    """One k-NN row per model on that model's fine-tuned network: ``(label, model)``."""
    return [(f"{FINETUNED_KNN}{model}]", model) for model in models]
