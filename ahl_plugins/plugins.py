"""Loading plugins and collecting what they register: one manager class.

Built-ins come from :data:`BUILTIN_PLUGINS` and are registered exactly like
third-party plugins, which come from the ``ahl_plugins`` entry-point group,
one at a time, so that one broken plugin is reported and the rest still work.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from ahl_plugins import hookspecs
from ahl_plugins.contracts import ComponentEntry, ModelSpec
from ahl_plugins.errors import (
    InvalidComponentError,
    PluginError,
    PluginLoadWarning,
    UnknownComponentError,
)
from ahl_plugins.registry import KINDS, KINDS_BY_KEY, Registry

ENTRY_POINT_GROUP = "ahl_plugins"
STRICT_ENV = "AHL_STRICT_PLUGINS"
DISABLED_ENV = "AHL_DISABLED_PLUGINS"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "builtin_plugins.extractors",
    "builtin_plugins.pseudo_anomalies",
    "builtin_plugins.losses",
    "builtin_plugins.devnet",
    "builtin_plugins.dra",
    "builtin_plugins.residual_patch",
    "builtin_plugins.estimators",
)


@dataclass
class PluginRecord:
    """What we know about one plugin: where it came from, what it gave, what went wrong."""

    name: str
    builtin: bool
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    disabled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.disabled

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "builtin": self.builtin,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": sorted(self.hooks),
            "components": {k: sorted(v) for k, v in sorted(self.components.items())},
            "error": self.error,
            "disabled": self.disabled,
        }


def check_train_options(where: str, values: Mapping[str, Any]) -> None:
    """A bundle's ``train_options`` are defaults for both trainers: each key must be an option of at least one,
    and valid there, so that a misspelt key fails at registration instead of being ignored."""
    from pydantic import BaseModel, ValidationError

    from ahl_plugins.ahl.options import AHLOptions
    from ahl_plugins.training.options import TrainOptions

    trainers: dict[str, type[BaseModel]] = {
        "the base loop (TrainOptions)": TrainOptions,
        "the AHL learner (AHLOptions)": AHLOptions,
    }
    unknown = sorted(set(values) - {name for model in trainers.values() for name in model.model_fields})
    if unknown:
        listed = "; ".join(f"{label}: {', '.join(sorted(model.model_fields))}" for label, model in trainers.items())
        raise InvalidComponentError(f"{where}: train_options has unknown key(s) {unknown}. Valid keys are {listed}")
    for label, model in trainers.items():
        try:
            model(**{k: v for k, v in values.items() if k in model.model_fields})
        except ValidationError as exc:
            raise InvalidComponentError(f"{where}: train_options are invalid for {label}:\n{exc}") from None


def _env_flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _own_version() -> str:
    from ahl_plugins import __version__

    return __version__


class PluginManager:
    """Loads plugins and holds one :class:`Registry` per component kind."""

    def __init__(
        self,
        builtins: tuple[str, ...] = BUILTIN_PLUGINS,
        entry_point_group: str | None = ENTRY_POINT_GROUP,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.builtins = builtins
        self.entry_point_group = entry_point_group
        self.strict = _env_flag(env, STRICT_ENV)
        self.disabled = {n.strip() for n in env.get(DISABLED_ENV, "").split(",") if n.strip()}
        self.records: dict[str, PluginRecord] = {}
        self.registries: dict[str, Registry] = {kind.key: Registry(kind) for kind in KINDS}
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._loaded = False

    # -- loading -----------------------------------------------------------------
    def load(self) -> PluginManager:
        """Import every plugin once and collect its components (idempotent)."""
        if self._loaded:
            return self
        self._loaded = True
        for module_name in self.builtins:
            record = PluginRecord(module_name, builtin=True, distribution="ahl-plugins", version=_own_version())
            if self._skip_disabled(record):
                continue
            self._guard(record, lambda m=module_name, r=record: self._add(importlib.import_module(m), r))
        if self.entry_point_group:
            for ep in sorted(importlib.metadata.entry_points(group=self.entry_point_group), key=lambda e: e.name):
                dist = getattr(ep, "dist", None)
                record = PluginRecord(
                    ep.name,
                    builtin=False,
                    distribution=dist.metadata["Name"] if dist is not None else None,
                    version=dist.version if dist is not None else None,
                )
                if self._skip_disabled(record):
                    continue
                self._guard(record, lambda ep=ep, r=record: self._add(ep.load(), r), origin=f"entry point {ep.value!r}")
        self._collect()
        return self

    def _skip_disabled(self, record: PluginRecord) -> bool:
        short = record.name.rsplit(".", 1)[-1]
        if record.name in self.disabled or (record.builtin and short in self.disabled):
            record.disabled = True
            self.records[record.name] = record
            return True
        return False

    def _add(self, plugin: object, record: PluginRecord) -> None:
        self.records[record.name] = record
        self._pm.register(plugin, name=record.name)
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError:
            self._pm.unregister(name=record.name)
            raise
        record.hooks = sorted(
            caller.name for caller in self._pm.get_hookcallers(plugin) or () if caller.name.startswith("ahl_")
        )

    def _guard(self, record: PluginRecord, action: Any, origin: str = "") -> None:
        """Run ``action``; on failure record it, warn, and keep going (or raise in strict mode)."""
        self.records[record.name] = record
        try:
            action()
        except Exception as exc:  # a plugin may raise anything
            where = f" ({origin})" if origin else ""
            dist = f", distribution {record.distribution} {record.version}" if record.distribution else ""
            record.error = f"{type(exc).__name__}: {exc}"
            message = (
                f"plugin {record.name!r}{where}{dist} failed and was skipped: {record.error}. "
                f"Fix or upgrade it, or disable it with {DISABLED_ENV}={record.name}"
            )
            if self._pm.has_plugin(record.name):
                self._pm.unregister(name=record.name)
            for registry in self.registries.values():
                registry.remove_plugin(record.name)
            record.components = {}
            if self.strict:
                raise PluginError(message + f" ({STRICT_ENV} is set)") from exc
            warnings.warn(message, PluginLoadWarning, stacklevel=3)

    def _collect(self) -> None:
        """Call every register hook of every plugin, one plugin at a time."""
        for registry in self.registries.values():
            registry.clear()
        for record in self.records.values():
            record.components = {}
        order = {name: (not rec.builtin, name) for name, rec in self.records.items()}
        for kind in KINDS:
            caller = getattr(self._pm.hook, kind.hook)
            impls = sorted(caller.get_hookimpls(), key=lambda i: order.get(i.plugin_name, (True, i.plugin_name)))
            for impl in impls:
                record = self.records.setdefault(impl.plugin_name, PluginRecord(impl.plugin_name, builtin=False))
                if not record.ok:
                    continue
                self._guard(record, lambda impl=impl, kind=kind, record=record: self._call_register(impl, kind, record))

    def _call_register(self, impl: Any, kind: Any, record: PluginRecord) -> None:
        registry = self.registries[kind.key]

        def register(name: str, factory: Any, /, **metadata: Any) -> None:
            unknown = set(metadata) - {"options", "description"}
            if unknown:
                raise InvalidComponentError(
                    f"register() for {kind.label} {name!r} got unknown keyword(s) {sorted(unknown)}; "
                    "only options= and description= are accepted"
                )
            description = metadata.get("description") or (factory.description if isinstance(factory, ModelSpec) else "")
            entry = ComponentEntry(
                kind.key, name, factory, record.name, metadata.get("options"), description or "", kind.label
            )
            if isinstance(factory, ModelSpec):
                check_train_options(
                    f"{kind.label} {name!r} registered by plugin {record.name!r}", factory.train_options
                )
            registry.add(entry)
            record.components.setdefault(kind.key, []).append(name)

        impl.function(register=register)

    # -- plugins added at run time (tests, notebooks) ---------------------------
    def register_plugin(self, plugin: object, name: str) -> None:
        """Add a plugin object (a module or class with hook implementations) and re-collect."""
        self.load()
        record = PluginRecord(name, builtin=False, distribution=None, version=None)
        self._guard(record, lambda: self._add(plugin, record))
        self._collect()

    def unregister_plugin(self, name: str) -> None:
        if self._pm.has_plugin(name):
            self._pm.unregister(name=name)
        self.records.pop(name, None)
        self._collect()

    @contextlib.contextmanager
    def temporary_plugin(self, plugin: object, name: str) -> Iterator[PluginRecord]:
        """Register ``plugin`` for the duration of a ``with`` block."""
        self.register_plugin(plugin, name)
        try:
            yield self.records[name]
        finally:
            self.unregister_plugin(name)

    # -- lookups ------------------------------------------------------------------
    def registry(self, kind: str) -> Registry:
        self.load()
        if kind not in self.registries:
            raise UnknownComponentError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS_BY_KEY)}")
        return self.registries[kind]

    def get(self, kind: str, name: str) -> ComponentEntry:
        return self.registry(kind).get(name)

    def model(self, name: str) -> ModelSpec:
        return self.get("models", name).factory

    def failures(self) -> list[PluginRecord]:
        self.load()
        return [r for r in self.records.values() if r.error]


_manager: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide manager, loaded on first use."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager.load()


def reset_manager() -> None:
    """Forget the process-wide manager (tests; after changing the environment)."""
    global _manager
    _manager = None
