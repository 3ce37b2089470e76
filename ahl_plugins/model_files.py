"""The files of a saved detector: what ``config.json`` must hold, and a checksum of every file.

``config.json`` is the commit point: it is written last, and it records the
SHA-256 of each other file written with it, and of itself (``checksum``, over
its canonical JSON without that key). Loading validates the whole document
against :class:`SavedModel`, checks its own checksum and re-hashes each listed
file, so a damaged file is reported by name instead of loading and scoring
differently.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ahl_plugins import __version__
from ahl_plugins.atomic import atomic_write_bytes
from ahl_plugins.config import FORMAT_VERSION, DetectorConfig
from ahl_plugins.errors import ModelFileError

CONFIG_FILE = "config.json"
SCORER_FILE = "scorer.safetensors"
EXTRACTOR_FILE = "extractor.safetensors"
#: The copied TorchScript network of a detector built with ``extractor="net.ts"``.
TORCHSCRIPT_FILE = "extractor.ts"
HISTORY_FILE = "history.json"
#: The tabular encoder of a detector fitted on a raw table (part of the model: it scores raw rows after load).
ENCODER_FILE = "encoder.json"
#: The data profile (``ahl_plugins.profile``): how inputs are read, what the training data looked like.
PROFILE_FILE = "profile.json"
#: Written beside a model by ``ahl fit`` only; removed when a save without them replaces the model.
OPTIONAL_FILES = ("split.json",)
#: Files a save writes only for some models; a save without one removes a stale copy.
STALE_IF_ABSENT = (*OPTIONAL_FILES, ENCODER_FILE, TORCHSCRIPT_FILE, PROFILE_FILE)
SHA256 = r"^[0-9a-f]{64}$"


class SavedFeatureSpec(BaseModel):
    kind: Literal["map", "vector"]
    channels: list[int] = Field(min_length=1)

    @field_validator("channels")
    @classmethod
    def _positive(cls, channels: list[int]) -> list[int]:
        if any(c < 1 for c in channels):
            raise ValueError("every scale needs at least one channel")
        return channels


class FitInfo(BaseModel):
    """``OSADDetector.fit_info_``; keys added by later versions are kept."""

    model_config = ConfigDict(extra="allow")

    input_kind: Literal["vector", "image"]
    feature_spec: SavedFeatureSpec
    input_dim: int | None = Field(None, ge=1)
    n_normals: int = Field(ge=0)
    n_seen: int = Field(ge=0)
    seen_types: dict[str, int] = Field(default_factory=dict)
    pseudo: dict[str, int] = Field(default_factory=dict)
    scorer: str
    n_tasks: int | None = Field(None, ge=1)


class SavedModel(BaseModel):
    """The whole of ``config.json``."""

    model_config = ConfigDict(extra="forbid")

    format_version: int
    ahl_plugins_version: str
    config: DetectorConfig
    threshold: float
    fit: FitInfo
    files: dict[str, str] = Field(
        default_factory=dict, description="file name -> SHA-256 hex digest; empty in models saved before checksums"
    )
    checksum: str | None = Field(
        None, pattern=SHA256, description="SHA-256 of this document without this key; None before checksums"
    )

    @field_validator("files")
    @classmethod
    def _plain_names(cls, files: dict[str, str]) -> dict[str, str]:
        for name, digest in files.items():
            if Path(name).name != name or name in ("", ".", "..", CONFIG_FILE):
                raise ValueError(f"file name {name!r} is not a plain file name beside config.json")
            if not re.match(SHA256, digest):
                raise ValueError(f"checksum of {name!r} is not a SHA-256 hex digest: {digest!r}")
        return files


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def write_model_files(
    directory: Path, payloads: Mapping[str, bytes], document: dict[str, Any], default: Any = None
) -> None:
    """Write ``payloads`` (name -> bytes), then ``config.json`` holding ``document`` and their checksums.

    Each file is replaced atomically; a stale optional file from a model saved
    here before is removed, so nothing of the old model is mistaken for the new.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, payload in payloads.items():
        atomic_write_bytes(directory / name, payload)
    document = {**document, "files": {name: sha256(payload) for name, payload in payloads.items()}}
    document = json.loads(json.dumps(document, default=default))  # the form load will see
    document["checksum"] = document_digest(document)
    atomic_write_bytes(directory / CONFIG_FILE, json.dumps(document, indent=2).encode("utf-8"))
    for name in STALE_IF_ABSENT:
        if name not in payloads:
            (directory / name).unlink(missing_ok=True)


def read_saved_model(directory: Path) -> SavedModel:
    """``config.json`` validated in full, and every file it lists checked against its checksum."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ModelFileError(f"no {CONFIG_FILE} in {directory}: not a saved OSADDetector directory")
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not valid JSON ({exc}); the file is truncated or corrupt") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc}") from None
    if not isinstance(document, dict):
        raise ModelFileError(f"{path} holds a JSON {type(document).__name__}, not the object a saved model writes")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{directory} was saved in format version {version!r}; this ahl-plugins {__version__} reads version "
            f"{FORMAT_VERSION}. Re-fit the model or use the ahl-plugins release that wrote it "
            f"({document.get('ahl_plugins_version', 'unknown')})"
        )
    try:
        saved = SavedModel.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()[:10])
        raise ModelFileError(
            f"{path} is not a valid saved model ({exc.error_count()} problem(s): {problems}); the file was edited "
            "or damaged. Restore it from a copy or re-fit the model"
        ) from None
    if saved.checksum is not None and document_digest(document) != saved.checksum:
        raise ModelFileError(
            f"{path} is damaged: its content differs from the SHA-256 checksum it recorded when the model was saved "
            "(the file was edited or corrupted since). Restore it from a copy or re-fit the model; to load a model "
            "on another device pass device=... (ahl score --device) instead of editing the file"
        )
    verify_checksums(directory, saved.files)
    return saved


def document_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of ``document`` without its ``checksum`` key, in a canonical JSON form (whitespace-independent)."""
    body = {key: value for key, value in document.items() if key != "checksum"}
    return sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def verify_checksums(directory: Path, files: Mapping[str, str]) -> None:
    for name, digest in files.items():
        path = directory / name
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            raise ModelFileError(
                f"{path} is missing: {CONFIG_FILE} lists it as part of the saved model. Restore it or re-fit"
            ) from None
        except OSError as exc:
            raise ModelFileError(f"cannot read {path}: {exc}") from None
        if sha256(payload) != digest:
            raise ModelFileError(
                f"{path} is damaged: its SHA-256 checksum differs from the one recorded in {CONFIG_FILE} when the "
                "model was saved (the file was changed, truncated or corrupted since). Restore it from a copy or "
                "re-fit the model"
            )


def read_json_file(path: Path) -> Any:
    """A JSON file of a saved model (history, encoder), with a :class:`ModelFileError` when it does not parse."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not valid JSON ({exc}); the file is truncated or corrupt") from None
