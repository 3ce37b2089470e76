"""Name-keyed registries, one per component kind, and the checks every registration passes.

A registry only knows the contracts; checks that need a trainer (a model bundle's ``train_options``) are the
plugin manager's, which sits above the trainers.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, replace

from ahl_plugins.contracts import ComponentEntry, ModelSpec
from ahl_plugins.errors import (
    DuplicateComponentError,
    InvalidComponentError,
    UnknownComponentError,
)


@dataclass(frozen=True)
class Kind:
    """A component kind: its registry key, hook name, and what to call one."""

    key: str
    hook: str
    label: str


KINDS: tuple[Kind, ...] = (
    Kind("feature_extractors", "ahl_register_feature_extractors", "feature extractor"),
    Kind("scorers", "ahl_register_scorers", "scorer"),
    Kind("losses", "ahl_register_losses", "loss"),
    Kind("models", "ahl_register_models", "model"),
    Kind("pseudo_anomaly_generators", "ahl_register_pseudo_anomaly_generators", "pseudo-anomaly generator"),
    Kind("estimators", "ahl_register_estimators", "estimator"),
)
KINDS_BY_KEY = {kind.key: kind for kind in KINDS}


def _check_entry(kind: Kind, entry: ComponentEntry) -> None:
    """Reject what cannot possibly satisfy the contract, at registration time."""
    where = f"{kind.label} {entry.name!r} registered by plugin {entry.plugin!r}"
    if not isinstance(entry.name, str) or not entry.name.strip():
        raise InvalidComponentError(
            f"plugin {entry.plugin!r} registered a {kind.label} with an empty or non-string name"
        )
    if kind.key == "models":
        if not isinstance(entry.factory, ModelSpec):
            raise InvalidComponentError(
                f"{where} is a {type(entry.factory).__name__}, not an ahl_plugins.ModelSpec; "
                "register models as register(name, ModelSpec(scorer=..., loss=...))"
            )
        return
    if not callable(entry.factory):
        raise InvalidComponentError(
            f"{where} is a {type(entry.factory).__name__}, not a factory; "
            f"register a class or function that builds the {kind.label}"
        )
    if entry.options is not None:
        from pydantic import BaseModel

        if not (inspect.isclass(entry.options) and issubclass(entry.options, BaseModel)):
            raise InvalidComponentError(
                f"{where}: options= must be a pydantic BaseModel subclass, got {entry.options!r}"
            )
    if inspect.isclass(entry.factory):
        required = {
            "feature_extractors": ("extract", "fingerprint", "spec"),
            "scorers": ("forward", "combine"),
            "pseudo_anomaly_generators": ("generate",),
            "estimators": ("task_weights",),
        }.get(kind.key, ())
        missing = [name for name in required if not hasattr(entry.factory, name)]
        if missing:
            raise InvalidComponentError(f"{where}: class {entry.factory.__qualname__} lacks {', '.join(missing)}")


class Registry:
    """Components of one kind by name; a duplicate name is an error naming both providers."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self._entries: dict[str, ComponentEntry] = {}

    def add(self, entry: ComponentEntry) -> None:
        if entry.label != self.kind.label:
            entry = replace(entry, label=self.kind.label)
        _check_entry(self.kind, entry)
        existing = self._entries.get(entry.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{self.kind.label} {entry.name!r} is registered twice: by plugin {existing.plugin!r} "
                f"and by plugin {entry.plugin!r}; rename one, or disable a plugin with "
                f"AHL_DISABLED_PLUGINS={entry.plugin}"
            )
        self._entries[entry.name] = entry

    def clear(self) -> None:
        self._entries.clear()

    def remove_plugin(self, plugin: str) -> None:
        self._entries = {name: e for name, e in self._entries.items() if e.plugin != plugin}

    def get(self, name: str) -> ComponentEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self._unknown_message(name)) from None

    def _unknown_message(self, name: str) -> str:
        names = sorted(self._entries)
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
        lines = [f"unknown {self.kind.label} {name!r}."]
        if close:
            lines.append(f"Did you mean: {', '.join(close)}?")
        if names:
            lines.append("Available: " + ", ".join(f"{n} (from {self._entries[n].plugin})" for n in names))
        else:
            lines.append(
                f"No {self.kind.label} is registered; is a plugin disabled or broken? See `ahl plugins list --all`."
            )
        return " ".join(lines)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[ComponentEntry]:
        return iter(self._entries[name] for name in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
