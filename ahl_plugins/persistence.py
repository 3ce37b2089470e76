"""Saving and loading an :class:`~ahl_plugins.detector.OSADDetector`: safetensors weights plus a checked config.

Nothing is ever unpickled: weights are safetensors, everything else JSON, and
``config.json`` (written last, with a SHA-256 of every file; see
:mod:`ahl_plugins.model_files`) is validated before any weight is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ahl_plugins import __version__
from ahl_plugins.config import FORMAT_VERSION, SECTIONS
from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.devices import resolve_device
from ahl_plugins.errors import ModelFileError
from ahl_plugins.features.module_extractor import FINETUNED_PREFIX
from ahl_plugins.model_files import (
    EXTRACTOR_FILE,
    HISTORY_FILE,
    SCORER_FILE,
    TORCHSCRIPT_FILE,
    read_json_file,
    read_saved_model,
    write_model_files,
)

if TYPE_CHECKING:
    from ahl_plugins.detector import OSADDetector


def save_detector(detector: OSADDetector, directory: str | Path, extra_files: Mapping[str, Any] | None = None) -> Path:
    """See :meth:`OSADDetector.save`."""
    from safetensors.torch import save as safetensors_bytes

    detector._check_fitted()
    if detector._custom_extractor is not None and detector.config.extractor_file is None:
        raise ModelFileError(
            "a detector with an extractor object (an nn.Module or FeatureExtractor instance) cannot be saved: its "
            "code is not data. Save the network with torch.jit.save(torch.jit.script(model), 'model.ts') and pass "
            "extractor='model.ts', "
            "or register the architecture as a plugin and pass its state dict as extractor_options weights=path"
        )
    directory = Path(directory)
    config = detector.config.model_dump(mode="json")
    network: dict[str, bytes] = {}
    if detector.config.extractor_file is not None:
        # The TorchScript network is part of the model: copied beside it and checksummed like the weights.
        source = Path(detector.config.extractor_file)
        try:
            network[TORCHSCRIPT_FILE] = source.read_bytes()
        except OSError as exc:
            raise ModelFileError(
                f"cannot copy the TorchScript extractor {source} into the saved model ({exc}); it was moved or "
                "deleted after fit. Put it back or re-fit"
            ) from None
        config["extractor_file"] = TORCHSCRIPT_FILE
    state = {k: v.detach().cpu().contiguous() for k, v in detector.scorer_.state_dict().items()}
    extractor_state = {k: v.cpu().contiguous() for k, v in detector.extractor_.fitted_state().items()}
    payloads = {
        SCORER_FILE: safetensors_bytes(state),
        EXTRACTOR_FILE: safetensors_bytes(extractor_state),
        **network,
        HISTORY_FILE: json.dumps(detector.history_, default=_json_default).encode("utf-8"),
        **{name: json.dumps(doc, indent=2, default=_json_default).encode("utf-8") for name, doc in (extra_files or {}).items()},
    }
    document = {
        "format_version": FORMAT_VERSION,
        "ahl_plugins_version": __version__,
        "config": config,
        "threshold": detector.threshold_,
        "fit": detector.fit_info_,
    }
    write_model_files(directory, payloads, document, default=_json_default)
    return directory



def load_detector(cls: type[OSADDetector], directory: str | Path, device: str | None = None) -> OSADDetector:
    """See :meth:`OSADDetector.load`."""
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load

    directory = Path(directory)
    saved = read_saved_model(directory)
    config = saved.config.model_dump()
    if device is not None:
        config["device"] = device
    sections = {k: config.pop(k, None) or {} for k in SECTIONS}
    if config.get("extractor_file") is not None:
        config["extractor_file"] = str(directory / config["extractor_file"])
    detector = cls(config.pop("model"), config.pop("ahl"), config.pop("extractor"), config.pop("seed"), config.pop("device"), **sections, **config)
    fit = saved.fit.model_dump(mode="json")
    detector.fit_info_ = fit
    detector.threshold_ = saved.threshold
    states = {}
    for name in (SCORER_FILE, EXTRACTOR_FILE):
        path = directory / name
        try:
            states[name] = safetensors_load(path.read_bytes())
        except FileNotFoundError:
            raise ModelFileError(f"missing weights file {path}") from None
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"cannot read the weights in {path} ({exc}); the file is truncated or corrupt") from None
    unchecked = "" if saved.files else " (or the file is damaged: this model was saved without checksums)"
    target = resolve_device(detector.config.device)
    extractor_state = states[EXTRACTOR_FILE]
    finetuned = any(k.startswith(FINETUNED_PREFIX) for k in extractor_state)
    extractor = detector._build_extractor(fit["input_kind"], skip_weights=finetuned)
    try:
        extractor.load_fitted_state(extractor_state)
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
        raise ModelFileError(
            f"{directory / EXTRACTOR_FILE} does not fit extractor {type(extractor).__name__} "
            f"({type(exc).__name__}: {exc}){unchecked}"
        ) from None
    detector.extractor_ = extractor.to(target)
    spec = FeatureSpec(fit["feature_spec"]["kind"], tuple(fit["feature_spec"]["channels"]))
    scorer = detector._skeleton_scorer(spec)
    scorer_state = states[SCORER_FILE]
    if scorer_state.keys() != scorer.state_dict().keys():
        missing = sorted(scorer.state_dict().keys() - scorer_state.keys())[:5]
        extra = sorted(scorer_state.keys() - scorer.state_dict().keys())[:5]
        raise ModelFileError(
            f"{directory / SCORER_FILE} does not match model {detector.config.model!r}: missing {missing}, "
            f"unexpected {extra}{unchecked}"
        )
    try:
        scorer.load_state_dict(scorer_state)
    except RuntimeError as exc:
        raise ModelFileError(f"{directory / SCORER_FILE} does not match model {detector.config.model!r}: {exc}{unchecked}") from None
    detector.scorer_ = scorer.to(target).eval()
    history_path = directory / HISTORY_FILE
    detector.history_ = read_json_file(history_path) if history_path.is_file() else None
    return detector


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
