"""A saved detector's state to files and back: safetensors weights plus a checked ``config.json``.

This module only converts; the detector rebuilds itself from a :class:`ModelState` (``OSADDetector.load``).
Nothing is ever unpickled: weights are safetensors, everything else JSON, and ``config.json`` (written last,
with a SHA-256 of every file; see :mod:`ahl_plugins.model_files`) is validated before any weight is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ahl_plugins import __version__
from ahl_plugins.config import FORMAT_VERSION
from ahl_plugins.errors import ModelFileError
from ahl_plugins.model_files import (
    ENCODER_FILE,
    EXTRACTOR_FILE,
    HISTORY_FILE,
    PROFILE_FILE,
    SCORER_FILE,
    TORCHSCRIPT_FILE,
    read_json_file,
    read_saved_model,
    write_model_files,
)

Tensors = dict[str, torch.Tensor]


@dataclass
class ModelState:
    """Everything a fitted detector is, as data: ``config`` holds no runtime settings (device, cache)."""

    config: dict[str, Any]
    threshold: float
    fit: dict[str, Any]
    scorer: Tensors
    extractor: Tensors
    history: Any = None
    network: bytes | None = None  # the TorchScript extractor, when the detector was built from one
    encoder: dict[str, Any] | None = None  # the tabular encoder, when it was fitted on a raw table
    profile: dict[str, Any] | None = None  # the data profile; None in models saved before profiles
    checked: bool = True  # False for a model saved before checksums


def save_state(state: ModelState, directory: str | Path, extra_files: Mapping[str, Any] | None = None) -> Path:
    """Write ``state`` (and ``extra_files``: name -> JSON document) into ``directory``, ``config.json`` last."""
    from safetensors.torch import save as safetensors_bytes

    directory = Path(directory)
    config = dict(state.config)
    payloads: dict[str, bytes] = {
        SCORER_FILE: safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in state.scorer.items()}),
        EXTRACTOR_FILE: safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in state.extractor.items()}),
    }
    if state.network is not None:
        payloads[TORCHSCRIPT_FILE] = state.network
        config["extractor_file"] = TORCHSCRIPT_FILE
    payloads[HISTORY_FILE] = json.dumps(state.history, default=_json_default).encode("utf-8")
    if state.encoder is not None:
        payloads[ENCODER_FILE] = json.dumps(state.encoder, indent=2).encode("utf-8")
    if state.profile is not None:
        payloads[PROFILE_FILE] = json.dumps(state.profile, indent=2).encode("utf-8")
    for name, doc in (extra_files or {}).items():
        payloads[name] = json.dumps(doc, indent=2, default=_json_default).encode("utf-8")
    document = {
        "format_version": FORMAT_VERSION,
        "ahl_plugins_version": __version__,
        "config": config,
        "threshold": state.threshold,
        "fit": state.fit,
    }
    write_model_files(directory, payloads, document, default=_json_default)
    return directory


def load_state(directory: str | Path) -> ModelState:
    """The state saved in ``directory``; a missing, damaged or incompatible file is a :class:`ModelFileError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load

    directory = Path(directory)
    saved = read_saved_model(directory)
    config = saved.config.model_dump()
    if config.get("extractor_file") is not None:
        config["extractor_file"] = str(directory / config["extractor_file"])
    weights = {}
    for name in (SCORER_FILE, EXTRACTOR_FILE):
        path = directory / name
        try:
            weights[name] = safetensors_load(path.read_bytes())
        except FileNotFoundError:
            raise ModelFileError(f"missing weights file {path}") from None
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelFileError(
                f"cannot read the weights in {path} ({exc}); the file is truncated or corrupt"
            ) from None
    history_path, encoder_path = directory / HISTORY_FILE, directory / ENCODER_FILE
    profile_path = directory / PROFILE_FILE
    return ModelState(
        config=config,
        threshold=saved.threshold,
        fit=saved.fit.model_dump(mode="json"),
        scorer=weights[SCORER_FILE],
        extractor=weights[EXTRACTOR_FILE],
        history=read_json_file(history_path) if history_path.is_file() else None,
        encoder=read_json_file(encoder_path) if encoder_path.is_file() else None,
        profile=read_json_file(profile_path) if PROFILE_FILE in saved.files else None,
        checked=bool(saved.files),
    )


def network_bytes(path: Path) -> bytes:
    """The TorchScript network a detector was built from, to be saved as part of the model."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileError(
            f"cannot copy the TorchScript extractor {path} into the saved model ({exc}); it was moved or "
            "deleted after fit. Put it back or re-fit"
        ) from None


def restore_module(module: Any, state: Tensors, file: Path, what: str, checked: bool, strict_keys: bool) -> None:
    """Load ``state`` into ``module`` (a scorer's ``load_state_dict`` or an extractor's ``load_fitted_state``);
    a mismatch names the file and what it should have matched."""
    unchecked = "" if checked else " (or the file is damaged: this model was saved without checksums)"
    if strict_keys:
        expected = module.state_dict().keys()
        if state.keys() != expected:
            missing, extra = sorted(expected - state.keys())[:5], sorted(state.keys() - expected)[:5]
            raise ModelFileError(f"{file} does not match {what}: missing {missing}, unexpected {extra}{unchecked}")
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelFileError(f"{file} does not match {what}: {exc}{unchecked}") from None
        return
    try:
        module.load_fitted_state(state)
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as exc:
        raise ModelFileError(f"{file} does not fit {what} ({type(exc).__name__}: {exc}){unchecked}") from None


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
