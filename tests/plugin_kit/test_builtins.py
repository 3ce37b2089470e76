"""The contract kit passes on every built-in component.

The cases are collected from whatever the built-in plugins register at run
time, so a new built-in is checked without editing this file. Image
extractors are checked with random weights (``weights="none"``) at a small
input size: pretrained weights may not be downloadable here, and loading
them is not part of the contract.
"""

from __future__ import annotations

import functools

import pytest

from ahl_plugins.plugins import BUILTIN_PLUGINS, PluginManager
from ahl_plugins.testing import check_component, components_of

# Heavy enough (whole backbones, the BiLSTM estimator, multi-head models with
# meta-gradients) to take more than a few seconds each on two CPU cores.
SLOW_KINDS = ("feature_extractors", "estimators", "models")


@functools.cache
def builtin_manager() -> PluginManager:
    return PluginManager(entry_point_group=None, env={}).load()


def builtin_cases() -> list:
    manager = builtin_manager()
    cases = []
    for plugin in BUILTIN_PLUGINS:
        record = manager.records.get(plugin)
        if record is None or not record.ok:
            continue  # reported by test_every_builtin_plugin_loads
        for kind, name in components_of(plugin, manager):
            marks = [pytest.mark.slow] if kind in SLOW_KINDS and name not in ("identity", "uniform") else []
            cases.append(pytest.param(kind, name, marks=marks, id=f"{kind}:{name}"))
    return cases


def light_options(kind: str, name: str) -> dict:
    """Offline, small builds of image extractors; defaults for everything else."""
    if kind != "feature_extractors":
        return {}
    fields = builtin_manager().get(kind, name).options
    fields = fields.model_fields if fields is not None else {}
    options = {}
    if "weights" in fields:
        options["weights"] = "none"
    if "image_size" in fields:
        options["image_size"] = 64
    return {"options": options} if options else {}


def test_every_builtin_plugin_loads() -> None:
    manager = builtin_manager()
    problems = {name: manager.records[name].error for name in BUILTIN_PLUGINS if manager.records[name].error}
    assert not problems, f"built-in plugins failed to load, so their components go unchecked: {problems}"
    assert all(manager.records[name].components for name in BUILTIN_PLUGINS)


@pytest.mark.parametrize(("kind", "name"), builtin_cases())
def test_contract_kit_passes_on_builtin(kind: str, name: str) -> None:
    report = check_component(kind, name, builtin_manager(), **light_options(kind, name))
    assert report.ok and report.passed
