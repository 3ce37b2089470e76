"""``OSADDetector``: the scikit-learn/PyOD-style face of the library.

``fit(X, y)`` takes inputs (an array, a tensor, image paths or an
``OSADDataset``) with ``y`` = 1 for a labelled anomaly and 0 for normal or
unlabelled; ``decision_function`` returns anomaly scores, higher = more
anomalous. With ``ahl=True`` the same model is trained by the AHL learner.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ahl_plugins.config import DETECTOR_KEYS, SECTIONS, DetectorConfig
from ahl_plugins.contracts import FeatureExtractor, FeatureSpec, InputKind
from ahl_plugins.data.dataset import OSADDataset
from ahl_plugins.devices import resolve_device
from ahl_plugins.errors import (
    DataError,
    InvalidOptionsError,
    NotFittedError,
)
from ahl_plugins.features.cache import FeatureCache, resolve_cache_dir
from ahl_plugins.features.module_extractor import (
    ModuleExtractor,
    ModuleExtractorOptions,
    is_torchscript_path,
)
from ahl_plugins.features.pipeline import (
    DEFAULT_POOL_SIZE,
    PseudoImages,
    compatible,
    extract_features,
    file_identity,
    load_images,
    make_pseudo_anomalies,
)
from ahl_plugins.features.store import Features
from ahl_plugins.plugins import get_manager
from ahl_plugins.presets import preset_options
from ahl_plugins.seeding import seeded
from ahl_plugins.training.data import TrainingData
from ahl_plugins.training.finetune import FINETUNE_ONLY_OPTIONS
from ahl_plugins.training.scoring import score_features


def _trainer_options_model(ahl: bool):
    if ahl:
        from ahl_plugins.ahl.options import AHLOptions

        return AHLOptions
    from ahl_plugins.training.base import TrainOptions

    return TrainOptions


def _fields(model: Any) -> frozenset[str]:
    return frozenset(model.model_fields) if model is not None else frozenset()


def _other_trainer_hint(key: str, ahl: bool) -> None:
    """An option of the trainer not in use is a mistake about ``ahl``, not a typo: say so."""
    if key in _fields(_trainer_options_model(not ahl)):
        if ahl:
            raise InvalidOptionsError(
                f"option {key!r} belongs to the base training loop, which ahl=True does not run; the AHL learner's "
                f"options are: {', '.join(sorted(_fields(_trainer_options_model(True))))} (`ahl fit --ahl --show-options` lists them)"
            )
        raise InvalidOptionsError(f"option {key!r} is an AHL option; it needs ahl=True (on the command line: --ahl)")


def _as_labels(y: Any) -> np.ndarray:
    """``y`` as int64 0/1 labels; NaN, infinite or fractional values are errors, never cast away."""
    values = np.asarray(y).reshape(-1)
    if values.dtype.kind == "b":
        return values.astype(np.int64)
    if values.dtype.kind not in "iuf":
        try:  # object arrays (pandas' nullable integers) and numeric strings
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            raise DataError(
                f"y must hold the numbers 0 (normal/unlabelled) or 1 (labelled anomaly), got dtype {values.dtype}"
            ) from None
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DataError(f"y holds NaN or infinite values at positions {bad[:10].tolist()}; every sample needs a label 0 or 1")
        bad = np.flatnonzero(values != np.round(values))
        if bad.size:
            raise DataError(
                f"y holds non-integer values ({', '.join(f'{values[i]:g}' for i in bad[:5])} at positions "
                f"{bad[:10].tolist()}); labels must be exactly 0 or 1 (threshold scores first, e.g. y = p >= 0.5)"
            )
    return values.astype(np.int64)


class OSADDetector:
    """An OSAD model (any registered one), trained plainly or wrapped by AHL.

    ``**options`` are routed by name to the detector, the trainer (base loop or
    AHL), the scorer, the loss or the extractor, in that order; an unknown name
    is an error listing every valid one.
    """

    def __init__(
        self,
        model: str = "devnet",
        ahl: bool = False,
        extractor: str | torch.nn.Module | FeatureExtractor | None = None,
        seed: int = 0,
        device: str = "cpu",
        **options: Any,
    ) -> None:
        self._custom_extractor: FeatureExtractor | None = None
        module: torch.nn.Module | None = None
        if isinstance(extractor, FeatureExtractor):
            self._custom_extractor, extractor = extractor, None
        elif isinstance(extractor, torch.nn.Module):
            module, extractor = extractor, None
        elif is_torchscript_path(extractor):
            options["extractor_file"], extractor = str(Path(extractor).expanduser().resolve()), None
        sections: dict[str, dict[str, Any]] = {key: dict(options.pop(key, None) or {}) for key in SECTIONS}
        config = {"model": model, "ahl": ahl, "extractor": extractor, "seed": seed, "device": device}
        manager = get_manager()
        spec = manager.model(model)
        routes = [
            ("ahl_options" if ahl else "train_options", _fields(_trainer_options_model(ahl))),
            ("finetune_options", FINETUNE_ONLY_OPTIONS),
            ("scorer_options", _fields(manager.get("scorers", spec.scorer).options)),
            ("loss_options", _fields(manager.get("losses", spec.loss).options)),
        ]
        for key, value in options.items():
            if key in DETECTOR_KEYS:
                config[key] = value
                continue
            section = next((name for name, names in routes if key in names), None)
            if section is None:
                _other_trainer_hint(key, ahl)
                valid = "; ".join(f"{name}: {', '.join(sorted(names)) or '-'}" for name, names in routes)
                raise InvalidOptionsError(
                    f"unknown option {key!r} for model {model!r}. Detector options: "
                    f"{', '.join(sorted(DETECTOR_KEYS))}; {valid}; extractor options go in extractor_options={{...}}"
                )
            sections[section][key] = value
        self.config = DetectorConfig(**config, **sections)
        self._validate_component_options()
        if module is not None:
            self._custom_extractor = ModuleExtractor.from_options(module, self._module_options())
        elif self.config.extractor_file is not None:
            self._custom_extractor = self._torchscript_extractor(Path(self.config.extractor_file))
        self.scorer_: torch.nn.Module | None = None
        self.extractor_: FeatureExtractor | None = None
        self.history_: Any = None
        self.threshold_: float | None = None
        self.fit_info_: dict[str, Any] = {}

    # -- configuration ------------------------------------------------------------
    def _validate_component_options(self) -> None:
        manager = get_manager()
        spec = manager.model(self.config.model)
        manager.get("scorers", spec.scorer).parse_options(self._component_options("scorer", spec.scorer))
        manager.get("losses", spec.loss).parse_options(self._component_options("loss", spec.loss))
        self._trainer_options()
        for name in self.config.pseudo_anomalies or ():
            manager.get("pseudo_anomaly_generators", name)
        if self.config.extractor is not None:
            manager.get("feature_extractors", self.config.extractor)
        if self.config.finetune_backbone:
            self._finetune_options()
        elif self.config.finetune_options:
            raise InvalidOptionsError(
                f"fine-tuning options {sorted(self.config.finetune_options)} need finetune_backbone=True"
            )

    def _module_options(self) -> ModuleExtractorOptions:
        """Options of a user's own network (nn.Module or TorchScript): image_size, layers, mean, std."""
        from pydantic import ValidationError

        try:
            return ModuleExtractorOptions(**self.config.extractor_options)
        except ValidationError as exc:
            raise InvalidOptionsError(f"invalid extractor_options for your own network:\n{exc}") from None

    def _torchscript_extractor(self, path: Path) -> ModuleExtractor:
        options = self._module_options()
        return ModuleExtractor.from_torchscript(
            path, image_size=options.image_size, mean=options.mean, std=options.std, layers=options.layers
        )

    def _finetune_options(self):
        """FinetuneOptions: the model's training defaults, the preset's and train_options (without AHL) for the
        base loop, then finetune_options."""
        from pydantic import ValidationError

        from ahl_plugins.training.finetune import FinetuneOptions

        spec = get_manager().model(self.config.model)
        shared = {k: v for k, v in spec.train_options.items() if k in FinetuneOptions.model_fields}
        preset = {k: v for k, v in preset_options(self.config.preset, "train_options").items() if k in FinetuneOptions.model_fields}
        own = {} if self.config.ahl else self.config.train_options
        try:
            return FinetuneOptions(**{**shared, **preset, **own, **self.config.finetune_options})
        except ValidationError as exc:
            raise InvalidOptionsError(f"invalid FinetuneOptions for model {self.config.model!r}:\n{exc}") from None

    def _component_options(self, kind: str, name: str) -> dict[str, Any]:
        """Options of the scorer or loss: the model bundle's, then the preset's, then the user's."""
        spec = get_manager().model(self.config.model)
        bundle = spec.scorer_options if kind == "scorer" else spec.loss_options
        own = self.config.scorer_options if kind == "scorer" else self.config.loss_options
        return {**bundle, **preset_options(self.config.preset, f"{kind}_options", name), **own}

    def _effective_options(self, registry: str, kind: str, name: str) -> dict[str, Any]:
        """Every option the component will run with: the merged options above, validated, defaults filled in."""
        parsed = get_manager().get(registry, name).parse_options(self._component_options(kind, name))
        return parsed.model_dump(mode="json") if parsed is not None else self._component_options(kind, name)

    def _trainer_options(self):
        spec = get_manager().model(self.config.model)
        model = _trainer_options_model(self.config.ahl)
        section = "ahl_options" if self.config.ahl else "train_options"
        own = self.config.ahl_options if self.config.ahl else self.config.train_options
        shared = {k: v for k, v in spec.train_options.items() if k in model.model_fields}
        preset = preset_options(self.config.preset, section)
        if {**shared, **own}.get("estimator", "sge") != "sge":
            preset.pop("estimator_options", None)  # the preset's estimator options are SGE's
        if self.config.ahl and len(shared) < len(spec.train_options):
            warnings.warn(
                f"model {self.config.model!r} sets train_options {sorted(set(spec.train_options) - set(shared))} "
                "for the base loop only; the AHL learner does not take them (its learning rates are outer_lr and "
                "inner_lr; set AHL options with ahl_options / -o)",
                stacklevel=3,
            )
        from pydantic import ValidationError

        try:
            return model(**{**shared, **preset, **own})
        except ValidationError as exc:
            raise InvalidOptionsError(f"invalid {model.__name__} for model {self.config.model!r}:\n{exc}") from None

    def get_params(self) -> dict[str, Any]:
        return self.config.model_dump()

    # -- inputs -------------------------------------------------------------------
    @staticmethod
    def _coerce(X: Any) -> tuple[list[Path] | np.ndarray, InputKind]:
        if isinstance(X, OSADDataset):
            X = X.inputs
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        if isinstance(X, np.ndarray) and X.dtype.kind in "fiub":
            if X.ndim != 2:
                raise DataError(f"array input must be 2-D (n_samples × n_features), got shape {X.shape}")
            if len(X) == 0:
                raise DataError("empty input: no rows to fit or score")
            return np.ascontiguousarray(X, dtype=np.float32), "vector"
        if isinstance(X, (str, Path)):
            raise DataError(f"got a single path {X!r}; pass a list of image paths or an OSADDataset")
        if isinstance(X, (Sequence, np.ndarray)) and len(X) and all(isinstance(p, (str, Path)) for p in X):
            return [Path(p) for p in X], "image"
        if isinstance(X, (Sequence, np.ndarray)) and len(X) == 0:
            raise DataError("empty input: no samples to fit or score")
        raise DataError(
            f"unsupported input of type {type(X).__name__}; pass a 2-D array or tensor, a list of image paths, "
            "or an OSADDataset"
        )

    def _cache(self) -> FeatureCache | None:
        return FeatureCache(resolve_cache_dir(self.config.cache_dir)) if self.config.use_cache else None

    def _build_extractor(self, kind: InputKind, skip_weights: bool = False) -> FeatureExtractor:
        """The configured extractor; ``skip_weights`` when saved fine-tuned weights replace the pretrained ones."""
        if self._custom_extractor is not None:
            extractor = self._custom_extractor
            if self.config.finetune_backbone:
                extractor = copy.deepcopy(extractor)  # fine-tuning must not change the caller's network
        else:
            spec = get_manager().model(self.config.model)
            name = self.config.extractor or (spec.image_extractor if kind == "image" else spec.vector_extractor)
            entry = get_manager().get("feature_extractors", name)
            options = entry.parse_options(self.config.extractor_options)
            if skip_weights and options is not None and "weights" in type(options).model_fields:
                options = options.model_copy(update={"weights": "none"})
            extractor = entry.factory(options)
        if extractor.input_kind != kind:
            raise DataError(
                f"extractor {self.config.extractor or type(extractor).__name__!r} takes {extractor.input_kind} inputs "
                f"but the data are {kind}s; choose an extractor for {kind}s"
            )
        return extractor

    def _features(self, inputs: list[Path] | np.ndarray) -> Features:
        features = extract_features(
            self.extractor_,
            inputs,
            cache=self._cache(),
            batch_size=self.config.extract_batch_size,
            device=resolve_device(self.config.device),
            progress=self.config.progress,
        )
        bad = [i for i, t in enumerate(features.scales) if not torch.isfinite(t).all()]
        if bad:
            rows = torch.nonzero(~torch.isfinite(features.scales[bad[0]].flatten(1)).all(1)).flatten()[:10].tolist()
            raise DataError(f"features contain NaN or infinite values at scale(s) {bad}, rows {rows}; check the inputs")
        return features

    # -- fitting ------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, anomaly_types: Sequence[str] | None = None) -> OSADDetector:
        """Train on normals (``y == 0``) and labelled anomalies (``y == 1``)."""
        if y is None and isinstance(X, OSADDataset):
            y = X.labels
            anomaly_types = anomaly_types if anomaly_types is not None else list(X.types)
        inputs, kind = self._coerce(X)
        if y is None:
            raise DataError("fit needs labels y (1 = labelled anomaly, 0 = normal or unlabelled)")
        labels = _as_labels(y)
        if len(labels) != len(inputs):
            raise DataError(f"X has {len(inputs)} samples but y has {len(labels)} labels")
        if not np.isin(labels, (0, 1)).all():
            raise DataError(f"y must hold 0 (normal/unlabelled) or 1 (labelled anomaly); found {sorted(set(labels.tolist()))}")
        normal_idx, seen_idx = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
        if len(normal_idx) < 2:
            raise DataError(f"fit needs normal training samples (y == 0); got {len(normal_idx)}")
        types = (
            [str(anomaly_types[i]) for i in seen_idx] if anomaly_types is not None else ["anomaly"] * len(seen_idx)
        )
        started = time.perf_counter()
        device = resolve_device(self.config.device)
        manager = get_manager()
        self.extractor_ = self._build_extractor(kind).to(device)
        if kind == "vector":
            self.extractor_.fit(torch.from_numpy(inputs))
        finetuned_scorer, finetuned = None, None
        if self.config.finetune_backbone:
            finetuned_scorer, finetuned = self._finetune(kind, inputs, normal_idx, seen_idx, device)
        tuned = time.perf_counter()
        features = self._features(inputs)
        normals, seen = features[normal_idx], features[seen_idx]
        normal_inputs = [inputs[i] for i in normal_idx] if kind == "image" else inputs[normal_idx]
        pseudo = self._pseudo_anomalies(kind, normal_inputs, normals)
        data = TrainingData(normals, seen, pseudo, tuple(types))
        extracted = time.perf_counter()

        spec_model = manager.model(self.config.model)
        scorer = self._new_scorer(features.spec)
        options = self._trainer_options()
        if self.config.ahl:
            from ahl_plugins.ahl.trainer import train_ahl

            scorer, history = train_ahl(
                scorer, self._loss(), data, options, seed=self.config.seed, device=device, progress=self.config.progress
            )
        elif finetuned_scorer is not None:
            scorer, history = finetuned_scorer, finetuned["epochs"]
        else:
            from ahl_plugins.training.base import train_base

            history = train_base(scorer, self._loss(), data, options, seed=self.config.seed, device=device, progress=self.config.progress)
        self.scorer_ = scorer.eval()
        self.history_ = history
        train_scores = score_features(self.scorer_, normals, batch_size=256, device=device)
        self.threshold_ = float(np.quantile(train_scores, 1.0 - self.config.contamination))
        self.fit_info_ = {
            "input_kind": kind,
            "feature_spec": {"kind": features.spec.kind, "channels": list(features.spec.channels)},
            "input_dim": int(inputs.shape[1]) if kind == "vector" else None,
            "n_normals": int(len(normal_idx)),
            "n_seen": int(len(seen_idx)),
            "seen_types": {t: types.count(t) for t in sorted(set(types))},
            "pseudo": {name: len(pool) for name, pool in pseudo.items()},
            "scorer": spec_model.scorer,
            "n_tasks": history.get("n_tasks") if isinstance(history, dict) else None,
            "seconds": {"features": extracted - tuned, "train": time.perf_counter() - extracted},
        }
        if finetuned is not None:
            self.fit_info_["seconds"]["finetune"] = tuned - started
            self.fit_info_["finetune"] = {
                "weights": finetuned["weights"],
                "cached": finetuned["cached"],
                "epochs": len(finetuned["epochs"]),
                "final_loss": finetuned["epochs"][-1]["loss"] if finetuned["epochs"] else None,
            }
        return self

    def _finetune(
        self, kind: InputKind, inputs: Any, normal_idx: np.ndarray, seen_idx: np.ndarray, device: torch.device
    ) -> tuple[torch.nn.Module, dict[str, Any]]:
        """Train ``extractor_`` end to end with a fresh scorer on images (see ahl_plugins.training.finetune)."""
        from ahl_plugins.training.finetune import (
            finetune_backbone,
            require_finetunable,
            training_identity,
        )

        if kind != "image":
            raise DataError(
                "finetune_backbone=True trains an image backbone end to end, but the inputs are vectors; "
                "drop finetune_backbone for tabular data or embeddings"
            )
        require_finetunable(self.extractor_)
        spec = get_manager().model(self.config.model)
        size = int(self.extractor_.image_size)
        normal_inputs = [inputs[i] for i in normal_idx]
        seen_inputs = [inputs[i] for i in seen_idx]
        made = {}
        if self.config.n_pseudo > 0:
            for name, generator, seed in self._pseudo_generators(kind):
                made[name] = PseudoImages(generator, normal_inputs, size, seed, DEFAULT_POOL_SIZE)
        n_pseudo = self.config.n_pseudo * len(made)
        labels = torch.cat([torch.zeros(len(normal_idx)), torch.ones(len(seen_idx)), torch.full((n_pseudo,), 2.0)]).long()

        def images() -> torch.Tensor:  # only when the fine-tuning cache misses
            pseudo = [pool.batch(range(self.config.n_pseudo)) for _, pool in sorted(made.items())]
            return torch.cat([load_images(normal_inputs, size), load_images(seen_inputs, size), *pseudo])

        scorer = self._new_scorer(self.extractor_.spec)
        identity = training_identity(
            [file_identity(p) for p in normal_inputs + seen_inputs], labels,
            {name: pool.identity() for name, pool in made.items()},
            {  # the effective options, defaults included: a preset, or a new default, that changes the heads misses
                "model": self.config.model,
                "scorer": self._effective_options("scorers", "scorer", spec.scorer),
                "loss": self._effective_options("losses", "loss", spec.loss),
            },
        )
        result = finetune_backbone(
            self.extractor_, scorer, self._loss(), images, labels, self._finetune_options(), seed=self.config.seed,
            device=device, cache=self._cache(), cache_identity=identity, progress=self.config.progress,
        )
        return scorer, result

    def _pseudo_generators(self, kind: InputKind) -> list[tuple[str, Any, int]]:
        """``(name, generator, seed)`` of every pseudo-anomaly generator in use, in name order."""
        manager = get_manager()
        registry = manager.registry("pseudo_anomaly_generators")
        names = self.config.pseudo_anomalies
        built = {}
        for name in names if names is not None else registry.names():
            entry = registry.get(name)
            generator = entry.factory(entry.parse_options({}))
            if names is None and not getattr(generator, "default", True):
                continue  # opt-in generators are used only when named
            if compatible(generator, self.extractor_):
                built[name] = generator
            elif names is not None:
                raise DataError(f"pseudo-anomaly generator {name!r} works on {generator.domain}s, but the inputs are {kind}s")
        return [(name, generator, self.config.seed * 1009 + i) for i, (name, generator) in enumerate(sorted(built.items()))]

    def _pseudo_anomalies(self, kind: InputKind, normal_inputs: Any, normals: Features) -> dict[str, Features]:
        generators = self._pseudo_generators(kind)
        if self.config.n_pseudo == 0:
            return {}
        return {
            name: make_pseudo_anomalies(
                self.extractor_, generator, normal_inputs, self.config.n_pseudo, seed=seed,
                normal_features=normals, cache=self._cache(), batch_size=self.config.extract_batch_size,
                device=resolve_device(self.config.device), progress=self.config.progress,
            )
            for name, generator, seed in generators
        }

    def _new_scorer(self, spec: FeatureSpec) -> torch.nn.Module:
        manager = get_manager()
        model = manager.model(self.config.model)
        entry = manager.get("scorers", model.scorer)
        options = entry.parse_options(self._component_options("scorer", model.scorer))
        with seeded(self.config.seed):
            scorer = entry.factory(spec, options)
        if not isinstance(scorer, torch.nn.Module) or not callable(getattr(scorer, "combine", None)):
            raise InvalidOptionsError(
                f"scorer {model.scorer!r} (from plugin {entry.plugin!r}) returned {type(scorer).__name__}, "
                "not an nn.Module with combine(); see the Scorer contract in ahl_plugins.contracts"
            )
        return scorer

    def _loss(self):
        manager = get_manager()
        model = manager.model(self.config.model)
        entry = manager.get("losses", model.loss)
        return entry.factory(entry.parse_options(self._component_options("loss", model.loss)))

    # -- scoring ------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.scorer_ is None or self.extractor_ is None:
            raise NotFittedError("this OSADDetector is not fitted yet; call fit(X, y) first, or OSADDetector.load(dir)")

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly scores, higher = more anomalous."""
        self._check_fitted()
        inputs, kind = self._coerce(X)
        if kind != self.fit_info_["input_kind"]:
            raise DataError(f"this detector was fitted on {self.fit_info_['input_kind']}s but got {kind}s")
        if kind == "vector" and inputs.shape[1] != self.fit_info_["input_dim"]:
            raise DataError(
                f"feature dimension mismatch: the detector was fitted on {self.fit_info_['input_dim']} features, "
                f"got {inputs.shape[1]}"
            )
        features = self._features(inputs)
        return score_features(self.scorer_, features, batch_size=256, device=resolve_device(self.config.device))

    def anomaly_maps(self, X: Any, *, sigma: float = 0.0, max_side: int | None = None) -> list[np.ndarray]:
        """One float32 ``H×W`` anomaly map per image, at the image's own size, from the same scorer as
        :meth:`decision_function` (see ``ahl_plugins.maps``); higher = more anomalous."""
        return list(self.iter_anomaly_maps(X, sigma=sigma, max_side=max_side))

    def iter_anomaly_maps(self, X: Any, *, sigma: float = 0.0, max_side: int | None = None) -> Iterator[np.ndarray]:
        """:meth:`anomaly_maps` one image at a time. ``sigma``: Gaussian smoothing in input-image pixels
        (0 = none); ``max_side``: shrink each map (aspect kept) so its longer side is at most this."""
        from ahl_plugins.data.masks import image_size
        from ahl_plugins.maps import fit_within, iter_maps, require_maps

        self._check_fitted()
        inputs, kind = self._coerce(X)
        if kind != "image" or self.fit_info_["feature_spec"]["kind"] != "map":
            raise DataError(
                f"anomaly maps need image inputs and feature maps; this detector was fitted on "
                f"{self.fit_info_['input_kind']}s with {self.fit_info_['feature_spec']['kind']} features, which have "
                "no positions. Fit it on images with an extractor that keeps spatial maps (e.g. resnet18, efficientnet_lite0)"
            )
        if sigma < 0:
            raise DataError(f"sigma must be >= 0 (pixels of the input image), got {sigma}")
        require_maps(self.scorer_, f"the scorer of model {self.config.model!r}")
        features = self._features(inputs)
        sizes = [image_size(p) for p in inputs]
        out = [fit_within(size, max_side) for size in sizes]
        sigmas = [sigma * o[0] / s[0] for o, s in zip(out, sizes)]
        device = resolve_device(self.config.device)
        return iter_maps(self.scorer_, features.scales, out, sigmas=sigmas, device=device)

    def predict(self, X: Any) -> np.ndarray:
        """1 where the score exceeds ``threshold_``: the ``1 - contamination`` quantile of the
        training normals' scores (so about ``contamination`` of normals are flagged)."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    # -- persistence (ahl_plugins.persistence) -------------------------------------
    def save(self, directory: str | Path, extra_files: Mapping[str, Any] | None = None) -> Path:
        """Write ``scorer.safetensors``, ``extractor.safetensors``, ``history.json``, then ``config.json``
        with a SHA-256 checksum of each; ``extra_files`` (name -> JSON document) are written and checked too."""
        from ahl_plugins.persistence import save_detector

        return save_detector(self, directory, extra_files)

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None) -> OSADDetector:
        """Rebuild a saved detector; never unpickles anything.

        ``config.json`` is validated in full and every file it lists is checked
        against its checksum first, so a damaged file is named, not loaded.
        """
        from ahl_plugins.persistence import load_detector

        return load_detector(cls, directory, device)

    def _skeleton_scorer(self, spec: FeatureSpec) -> torch.nn.Module:
        """An untrained scorer of the saved shape (the ensemble ablation holds several)."""
        scorer = self._new_scorer(spec)
        if self.config.ahl and self._trainer_options().ablation == "ensemble":
            from ahl_plugins.ahl.ensemble import EnsembleScorer

            return EnsembleScorer.from_template(scorer, self.fit_info_.get("n_tasks") or 1)
        return scorer
