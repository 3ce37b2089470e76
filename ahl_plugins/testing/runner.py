"""Dispatch: check one component, a plugin's components, or whatever `ahl plugins check NAME` names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ahl_plugins.errors import UnknownComponentError
from ahl_plugins.plugins import PluginManager
from ahl_plugins.registry import KINDS, KINDS_BY_KEY
from ahl_plugins.testing.common import CHECK_ORDER, ContractError, ContractReport, kind_key, loaded_manager
from ahl_plugins.testing.estimators import check_estimator
from ahl_plugins.testing.extractors import check_extractor
from ahl_plugins.testing.generators import check_generator
from ahl_plugins.testing.losses import check_loss
from ahl_plugins.testing.models import check_model
from ahl_plugins.testing.scorers import check_scorer

_CHECKS: dict[str, Callable[..., ContractReport]] = {
    "scorers": check_scorer,
    "losses": check_loss,
    "models": check_model,
    "feature_extractors": check_extractor,
    "pseudo_anomaly_generators": check_generator,
    "estimators": check_estimator,
}


def check_component(kind: str, name: str, manager: PluginManager | None = None, **options: Any) -> ContractReport:
    """Run the checks for one component; ``kind`` is a registry key or a singular such as 'scorer'."""
    __tracebackhide__ = True
    return _CHECKS[kind_key(kind)](name, manager, **options)


def components_of(plugin: str, manager: PluginManager | None = None) -> list[tuple[str, str]]:
    """``(kind, name)`` of every component ``plugin`` registered, in checking order.

    Meant for ``pytest.mark.parametrize``; raises a clear error when the plugin
    is not installed, failed to load, or was disabled.
    """
    manager = loaded_manager(manager)
    record = manager.records.get(plugin)
    if record is None:
        names = ", ".join(sorted(manager.records)) or "none"
        raise UnknownComponentError(
            f"no plugin named {plugin!r} is loaded (loaded: {names}); install it (pip install -e .) so its "
            "'ahl_plugins' entry point is found, or check the entry point's name"
        )
    if record.disabled:
        raise UnknownComponentError(f"plugin {plugin!r} is disabled by AHL_DISABLED_PLUGINS")
    if record.error:
        raise UnknownComponentError(f"plugin {plugin!r} failed to load: {record.error}")
    return [(kind, name) for kind in CHECK_ORDER for name in sorted(record.components.get(kind, ()))]


def parametrize_components(plugin: str, manager: PluginManager | None = None) -> Any:
    """``@parametrize_components("my_plugin")``: a pytest parametrize over (kind, name) with readable ids."""
    import pytest

    cases = components_of(plugin, manager)
    return pytest.mark.parametrize(("kind", "name"), cases, ids=[f"{KINDS_BY_KEY[k].label}:{n}" for k, n in cases])


def resolve_targets(name: str, manager: PluginManager | None = None, kind: str | None = None) -> list[tuple[str, str]]:
    """What ``ahl plugins check NAME`` checks: a plugin's components, or the components called NAME."""
    manager = loaded_manager(manager)
    if kind is not None:
        key = kind_key(kind)
        manager.get(key, name)
        return [(key, name)]
    if name in manager.records:
        return components_of(name, manager)
    found = [(k, name) for k in CHECK_ORDER if name in manager.registry(k)]
    if found:
        return found
    import difflib

    candidates = set(manager.records) | {n for k in KINDS for n in manager.registry(k.key).names()}
    close = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownComponentError(
        f"{name!r} is neither a loaded plugin nor a registered component.{hint} See `ahl plugins list --all`."
    )


def run_checks(
    targets: Sequence[tuple[str, str]], manager: PluginManager | None = None, **options: Any
) -> list[ContractReport]:
    """Check every target and collect the reports; never raises ContractError."""
    manager = loaded_manager(manager)
    reports = []
    for kind, name in targets:
        key = kind_key(kind)
        try:
            reports.append(check_component(key, name, manager, **options))
        except ContractError as exc:
            entry = manager.get(key, name)
            reports.append(ContractReport(key, name, entry.plugin, list(exc.passed), [], exc))
        except Exception as exc:  # noqa: BLE001 - the kit itself, or a component outside a guarded call
            entry = manager.get(key, name)
            error = ContractError(
                "unexpected-error",
                f"checking stopped on {type(exc).__name__}: {exc}; run check_component({key!r}, {name!r}) "
                "in Python for the traceback",
                kind=key,
                name=name,
                plugin=entry.plugin,
            )
            reports.append(ContractReport(key, name, entry.plugin, [], [], error))
    return reports


def check_all(plugin: str, manager: PluginManager | None = None, **options: Any) -> list[ContractReport]:
    """Check every component ``plugin`` registered; raise one ContractError listing all failures."""
    __tracebackhide__ = True
    reports = run_checks(components_of(plugin, manager), manager, **options)
    failures = [r.error for r in reports if r.error is not None]
    if len(failures) == 1:
        raise failures[0]
    if failures:
        first = failures[0]
        raise ContractError(
            first.requirement, first.detail, kind=first.kind, name=first.name, plugin=first.plugin, failures=failures
        )
    return reports
