"""``OSADDetector``: the scikit-learn/PyOD-style face of the library.

``fit(X, y)`` takes inputs (an array, a tensor, image paths, a raw table or an ``OSADDataset``) with ``y`` = 1
for a labelled anomaly and 0 for normal or unlabelled; ``decision_function`` returns anomaly scores, higher =
more anomalous. With ``ahl=True`` the same model is trained by the AHL learner. The work lives below this
face: options in :mod:`ahl_plugins.resolve`, components in :mod:`ahl_plugins.components`, inputs in
:mod:`ahl_plugins.inputs`, training in :mod:`ahl_plugins.fitting`, files in :mod:`ahl_plugins.persistence`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import ValidationError

from ahl_plugins.components import Components
from ahl_plugins.config import RUNTIME_KEYS, DetectorConfig
from ahl_plugins.contracts import FeatureExtractor, FeatureSpec
from ahl_plugins.data.dataset import OSADDataset
from ahl_plugins.data.image_stats import batch_stats
from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.data.tabular import TabularEncoder
from ahl_plugins.drift import DriftReport, compare_batch
from ahl_plugins.errors import (
    DataError,
    InvalidOptionsError,
    ModelFileError,
    NotFittedError,
)
from ahl_plugins.features.module_extractor import (
    FINETUNED_PREFIX,
    ModuleExtractor,
    ModuleExtractorOptions,
    is_torchscript_path,
)
from ahl_plugins.features.store import Features
from ahl_plugins.fitting import Runtime, features_of, fit_components
from ahl_plugins.inputs import coerce, fit_encoder, training_labels
from ahl_plugins.model_files import EXTRACTOR_FILE, PROFILE_FILE, SCORER_FILE
from ahl_plugins.persistence import (
    ModelState,
    load_state,
    network_bytes,
    restore_module,
    save_state,
)
from ahl_plugins.plugins import get_manager
from ahl_plugins.profile import DataProfile, profile_from_json
from ahl_plugins.resolve import ResolvedOptions, resolve, route_options
from ahl_plugins.training.scoring import score_features

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

#: The constructor's named parameters; every other keyword is an option routed by name.
NAMED = ("model", "ahl", "extractor", "seed", "device")


class OSADDetector:
    """An OSAD model (any registered one), trained plainly or wrapped by AHL.

    ``**options`` are routed by name to the detector, the trainer (base loop or AHL), the fine-tuning stage
    (names only it has), the scorer or the loss; an unknown name is an error listing every valid one.
    ``get_params`` / ``set_params`` work on exactly these arguments, so ``sklearn.base.clone`` works.
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
        self._params: dict[str, Any] = {
            "model": model,
            "ahl": ahl,
            "extractor": extractor,
            "seed": seed,
            "device": device,
            **options,
        }
        own: FeatureExtractor | None = None
        module: torch.nn.Module | None = None
        if isinstance(extractor, FeatureExtractor):
            own, extractor = extractor, None
        elif isinstance(extractor, torch.nn.Module):
            module, extractor = extractor, None
        elif is_torchscript_path(extractor):
            options = {**options, "extractor_file": str(Path(extractor).expanduser().resolve())}
            extractor = None
        manager = get_manager()
        config = route_options(manager, model, ahl, options)
        try:
            self.config = DetectorConfig(model=model, ahl=ahl, extractor=extractor, seed=seed, device=device, **config)
        except ValidationError as exc:
            raise InvalidOptionsError(f"invalid detector options for model {model!r}:\n{exc}") from None
        self.resolved: ResolvedOptions = resolve(manager, self.config)
        if module is not None:
            own = ModuleExtractor.from_options(module, self._module_options())
        elif self.config.extractor_file is not None:
            module_options = self._module_options()
            own = ModuleExtractor.from_torchscript(
                Path(self.config.extractor_file),
                image_size=module_options.image_size,
                mean=module_options.mean,
                std=module_options.std,
                layers=module_options.layers,
            )
        self.components = Components(manager, self.resolved, own)
        self.scorer_: ScorerModule | None = None
        self.extractor_: FeatureExtractor | None = None
        self.encoder_: TabularEncoder | None = None
        self.history_: Any = None
        self.threshold_: float | None = None
        self.fit_info_: dict[str, Any] = {}
        self.profile_: DataProfile | None = None

    def _module_options(self) -> ModuleExtractorOptions:
        """Options of a user's own network (nn.Module or TorchScript): image_size, layers, mean, std."""
        try:
            return ModuleExtractorOptions(**self.config.extractor_options)
        except ValidationError as exc:
            raise InvalidOptionsError(f"invalid extractor_options for your own network:\n{exc}") from None

    @property
    def runtime(self) -> Runtime:
        """Device, cache and progress: how this detector runs, never saved with it."""
        return Runtime(**{key: getattr(self.config, key) for key in RUNTIME_KEYS})

    # -- scikit-learn parameters -----------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments, as given (``deep`` is accepted for scikit-learn and changes nothing)."""
        return dict(self._params)

    def set_params(self, **params: Any) -> OSADDetector:
        """Change constructor arguments; the detector is rebuilt (unfitted) and every option checked again."""
        type(self).__init__(self, **{**self._params, **params})
        return self

    # -- fitting and scoring -----------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any = None,
        anomaly_types: Sequence[str] | None = None,
        *,
        read_settings: ReadSettings | None = None,
        masks: Sequence[str | Path | None] | None = None,
    ) -> OSADDetector:
        """Train on normals (``y == 0``) and labelled anomalies (``y == 1``).

        Images are read with ``read_settings``, else an ``OSADDataset``'s own (``X.read``: the bit depth its
        folder was read at), else at their container's depth; the model keeps them in its data profile and
        reads every image it scores the same way.

        ``masks``: one ground-truth pixel mask file (or None) per image, else an ``OSADDataset``'s own
        (``X.masks``, MVTec layout ``ground_truth/``). The labelled anomalies' masks reach a loss that takes
        per-position labels (docs/plugins.md, "Pixel masks"); other models ignore them."""
        encoder = fit_encoder(X)
        inputs, kind = coerce(X, encoder)
        normal_idx, seen_idx, types = training_labels(X, y, anomaly_types, len(inputs))
        read = read_settings or (X.read if isinstance(X, OSADDataset) else DEFAULT_READ)
        fitted = fit_components(
            self.components,
            self.runtime,
            inputs,
            kind,
            normal_idx,
            seen_idx,
            types,
            self.config.contamination,
            read=read,
            encoder=encoder is not None,
            masks=masks if masks is not None else (X.masks if isinstance(X, OSADDataset) else None),
        )
        self.extractor_, self.scorer_, self.history_ = fitted.extractor, fitted.scorer, fitted.history
        self.threshold_, self.fit_info_, self.encoder_ = fitted.threshold, fitted.info, encoder
        self.profile_ = fitted.profile
        return self

    @property
    def read_settings_(self) -> ReadSettings | None:
        """How this model reads images: its profile's settings; None for a model saved before profiles."""
        return None if self.profile_ is None else self.profile_.read_settings()

    def read_settings_for(self, X: Any) -> ReadSettings:
        """The settings ``X`` is read with: the model's own, whatever the batch's; a model saved before
        profiles reads a data set by its own settings (``X.read``), as it always did."""
        own = self.read_settings_
        if own is not None:
            return own
        return X.read if isinstance(X, OSADDataset) else DEFAULT_READ

    def _check_fitted(self) -> tuple[ScorerModule, FeatureExtractor]:
        """The fitted scorer and extractor; :class:`NotFittedError` before ``fit`` or ``load``."""
        if self.scorer_ is None or self.extractor_ is None:
            raise NotFittedError("this OSADDetector is not fitted yet; call fit(X, y) first, or OSADDetector.load(dir)")
        return self.scorer_, self.extractor_

    def features(self, X: Any) -> Features:
        """The features this detector scores ``X`` by (its extractor, its standardisation, the cache)."""
        _, extractor = self._check_fitted()
        inputs, kind = coerce(X, self.encoder_)
        if kind != self.fit_info_["input_kind"]:
            raise DataError(f"this detector was fitted on {self.fit_info_['input_kind']}s but got {kind}s")
        if kind == "vector" and np.asarray(inputs).shape[1] != self.fit_info_["input_dim"]:
            raise DataError(
                f"feature dimension mismatch: the detector was fitted on {self.fit_info_['input_dim']} features, "
                f"got {np.asarray(inputs).shape[1]}"
            )
        return features_of(extractor, inputs, self.runtime, self.read_settings_for(X))

    def decision_function(self, X: Any, *, check_drift: bool = True) -> np.ndarray:
        """Anomaly scores, higher = more anomalous.

        ``check_drift``: compare the batch with the model's data profile and emit one
        :class:`~ahl_plugins.errors.DataDriftWarning` naming every difference (see :meth:`drift_report`)."""
        scores = self.scores_of(self.features(X))
        if check_drift and self.profile_ is not None:
            self.drift_report(X, scores).warn(f"this batch of {len(scores)} inputs")
        return scores

    def scores_of(self, features: Features) -> np.ndarray:
        """Anomaly scores of features from :meth:`features` (so a caller that also wants maps extracts once)."""
        scorer, _ = self._check_fitted()
        return score_features(scorer, features, batch_size=256, device=self.runtime.torch_device)

    def drift_report(self, X: Any, scores: np.ndarray) -> DriftReport:
        """How the batch ``X`` (scored ``scores``) differs from the training data; an empty report for a model
        saved before profiles. Reads every image once more for its size and raw values."""
        self._check_fitted()
        if self.profile_ is None:
            return DriftReport(comparison={"profile": None})
        inputs, kind = coerce(X, self.encoder_)
        read = self.read_settings_for(X)
        images = batch_stats(inputs, read) if kind == "image" else None
        return compare_batch(self.profile_, scores, images, read)

    def predict(self, X: Any) -> np.ndarray:
        """1 where the score exceeds ``threshold_``: the ``1 - contamination`` quantile of the
        training normals' scores (so about ``contamination`` of normals are flagged)."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def anomaly_maps(self, X: Any, *, sigma: float = 0.0, max_side: int | None = None) -> list[np.ndarray]:
        """One float32 ``H×W`` anomaly map per image, at the image's own size, from the same scorer as
        :meth:`decision_function` (see ``ahl_plugins.maps``); higher = more anomalous."""
        return list(self.iter_anomaly_maps(X, sigma=sigma, max_side=max_side))

    def iter_anomaly_maps(
        self, X: Any, *, sigma: float = 0.0, max_side: int | None = None, features: Features | None = None
    ) -> Iterator[np.ndarray]:
        """:meth:`anomaly_maps` one image at a time. ``sigma``: Gaussian smoothing in input-image pixels
        (0 = none); ``max_side``: shrink each map (aspect kept) so its longer side is at most this;
        ``features``: ``X``'s features from :meth:`features` when the caller has them already."""
        from ahl_plugins.data.masks import image_size
        from ahl_plugins.maps import fit_within, iter_maps, require_maps

        scorer, _ = self._check_fitted()
        inputs, kind = coerce(X, self.encoder_)
        if kind != "image" or self.fit_info_["feature_spec"]["kind"] != "map":
            raise DataError(
                f"anomaly maps need image inputs and feature maps; this detector was fitted on "
                f"{self.fit_info_['input_kind']}s with {self.fit_info_['feature_spec']['kind']} features, which have "
                "no positions. Fit it on images with an extractor that keeps spatial maps (e.g. resnet18, efficientnet_lite0)"
            )
        if sigma < 0:
            raise DataError(f"sigma must be >= 0 (pixels of the input image), got {sigma}")
        require_maps(scorer, f"the scorer of model {self.config.model!r}")
        features = self.features(X) if features is None else features
        sizes = [image_size(p) for p in inputs]
        out = [fit_within(size, max_side) for size in sizes]
        sigmas = [sigma * o[0] / s[0] for o, s in zip(out, sizes, strict=True)]
        return iter_maps(scorer, features.scales, out, sigmas=sigmas, device=self.runtime.torch_device)

    # -- saving and loading --------------------------------------------------------------
    def save(self, directory: str | Path, extra_files: Mapping[str, Any] | None = None) -> Path:
        """Write the weights, history, encoder and ``config.json`` (last, with a SHA-256 of each file); runtime
        settings (device, cache) are not part of the model. ``extra_files`` (name -> JSON) are written and checked too."""
        scorer, extractor = self._check_fitted()
        assert self.threshold_ is not None  # set with the scorer by fit and by load
        if self.components.own_extractor is not None and self.config.extractor_file is None:
            raise ModelFileError(
                "a detector with an extractor object (an nn.Module or FeatureExtractor instance) cannot be saved: its "
                "code is not data. Save the network with torch.jit.save(torch.jit.script(model), 'model.ts') and pass "
                "extractor='model.ts', "
                "or register the architecture as a plugin and pass its state dict as extractor_options weights=path"
            )
        network = None if self.config.extractor_file is None else network_bytes(Path(self.config.extractor_file))
        state = ModelState(
            config=self.config.model_dump(mode="json", exclude=set(RUNTIME_KEYS)),
            threshold=self.threshold_,
            fit=self.fit_info_,
            scorer=scorer.state_dict(),
            extractor=extractor.fitted_state(),
            history=self.history_,
            network=network,
            encoder=self.encoder_.to_dict() if self.encoder_ is not None else None,
            profile=self.profile_.model_dump(mode="json") if self.profile_ is not None else None,
        )
        return save_state(state, directory, extra_files)

    @classmethod
    def load(cls, directory: str | Path, device: str | None = None, **runtime: Any) -> OSADDetector:
        """Rebuild a saved detector; never unpickles anything. ``device`` and ``runtime`` (cache_dir, use_cache,
        extract_batch_size, progress) say how to run it.

        ``config.json`` is validated in full and every file it lists is checked against its checksum first, so
        a damaged file is named, not loaded.
        """
        unknown = set(runtime) - set(RUNTIME_KEYS)
        if unknown:
            raise InvalidOptionsError(
                f"load() takes runtime settings only ({', '.join(RUNTIME_KEYS)}); got {sorted(unknown)}"
            )
        directory = Path(directory)
        state = load_state(directory)
        model = {k: v for k, v in state.config.items() if k not in RUNTIME_KEYS}
        chosen_device: dict[str, Any] = {"device": device} if device is not None else {}
        detector = cls(**model, **runtime, **chosen_device)
        detector.fit_info_, detector.threshold_, detector.history_ = state.fit, state.threshold, state.history
        detector.encoder_ = TabularEncoder.from_dict(state.encoder) if state.encoder is not None else None
        detector.profile_ = (
            None if state.profile is None else profile_from_json(state.profile, str(directory / PROFILE_FILE))
        )
        target = detector.runtime.torch_device
        finetuned = any(k.startswith(FINETUNED_PREFIX) for k in state.extractor)
        extractor = detector.components.extractor(state.fit["input_kind"], skip_weights=finetuned)
        restore_module(
            extractor,
            state.extractor,
            directory / EXTRACTOR_FILE,
            f"extractor {type(extractor).__name__}",
            state.checked,
            strict_keys=False,
        )
        detector.extractor_ = extractor.to(target)
        spec = FeatureSpec(state.fit["feature_spec"]["kind"], tuple(state.fit["feature_spec"]["channels"]))
        scorer = detector.components.saved_scorer(spec, state.fit.get("n_tasks"))
        restore_module(
            scorer,
            state.scorer,
            directory / SCORER_FILE,
            f"model {detector.config.model!r}",
            state.checked,
            strict_keys=True,
        )
        detector.scorer_ = scorer.to(target).eval()
        return detector
