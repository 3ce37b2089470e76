"""Plugin loading: built-ins, entry points, failures, strict and disabled plugins."""

from __future__ import annotations

import sys
import types

import pytest
from conftest import write_distribution

from ahl_plugins import ModelSpec, hookimpl
from ahl_plugins.errors import (
    DuplicateComponentError,
    InvalidComponentError,
    PluginError,
    PluginLoadWarning,
    UnknownComponentError,
)
from ahl_plugins.plugins import PluginManager

GOOD_PLUGIN = """
from ahl_plugins import hookimpl, ModelSpec

def make_loss(options):
    return lambda heads, labels: heads["score"].mean()

@hookimpl
def ahl_register_losses(register):
    register("goodloss", make_loss, description="mean score")

@hookimpl
def ahl_register_models(register):
    register("goodmodel", ModelSpec(scorer="devnet", loss="goodloss"))
"""


def module_plugin(name: str, **hooks) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def a_loss(options):
    return lambda heads, labels: heads["score"].sum()


def test_builtins_are_registered_like_plugins(monkeypatch):
    source = module_plugin("builtin_fake", ahl_register_losses=lambda register: register("fakeloss", a_loss))
    monkeypatch.setitem(sys.modules, "builtin_fake", source)
    manager = PluginManager(builtins=("builtin_fake",), entry_point_group=None, env={}).load()
    assert manager.get("losses", "fakeloss").plugin == "builtin_fake"
    record = manager.records["builtin_fake"]
    assert record.builtin and record.ok
    assert record.hooks == ["ahl_register_losses"]
    assert record.components == {"losses": ["fakeloss"]}


def test_entry_point_plugin_discovered_through_package_metadata(isolated_path):
    write_distribution(isolated_path, "good-plug", "1.2.3", {"goodplug": "goodplug"}, {"goodplug": GOOD_PLUGIN})
    manager = PluginManager(builtins=(), env={}).load()
    record = manager.records["goodplug"]
    assert (record.distribution, record.version, record.builtin) == ("good-plug", "1.2.3", False)
    assert record.components == {"losses": ["goodloss"], "models": ["goodmodel"]}
    assert manager.model("goodmodel") == ModelSpec(scorer="devnet", loss="goodloss")
    assert manager.get("losses", "goodloss").description == "mean score"


def test_broken_plugin_is_reported_and_the_rest_keeps_working(isolated_path):
    write_distribution(
        isolated_path,
        "broken-plug",
        "0.1",
        {"brokenplug": "brokenplug", "goodplug": "goodplug", "missing": "no_such_module_xyz"},
        {"brokenplug": "raise RuntimeError('boom at import')", "goodplug": GOOD_PLUGIN},
    )
    with pytest.warns(PluginLoadWarning) as caught:
        manager = PluginManager(builtins=(), env={}).load()
    assert "goodloss" in manager.registry("losses")
    failures = {r.name: r.error for r in manager.failures()}
    assert failures["brokenplug"] == "RuntimeError: boom at import"
    assert "No module named 'no_such_module_xyz'" in failures["missing"]
    messages = " ".join(str(w.message) for w in caught)
    assert "plugin 'brokenplug'" in messages and "distribution broken-plug 0.1" in messages
    assert "AHL_DISABLED_PLUGINS=brokenplug" in messages


def test_strict_mode_turns_a_failure_into_an_error(isolated_path):
    write_distribution(isolated_path, "broken-plug", "0.1", {"brokenplug": "brokenplug"}, {"brokenplug": "1/0"})
    manager = PluginManager(builtins=(), env={"AHL_STRICT_PLUGINS": "1"})
    with pytest.raises(PluginError, match=r"plugin 'brokenplug'.*ZeroDivisionError.*AHL_STRICT_PLUGINS is set"):
        manager.load()


def test_disabled_plugins_are_not_imported(isolated_path):
    write_distribution(isolated_path, "broken-plug", "0.1", {"brokenplug": "brokenplug"}, {"brokenplug": "1/0"})
    manager = PluginManager(builtins=(), env={"AHL_DISABLED_PLUGINS": "brokenplug, other"}).load()
    record = manager.records["brokenplug"]
    assert record.disabled and record.error is None
    assert "brokenplug" not in sys.modules


def test_register_hook_that_raises_is_isolated():
    def bad(register):
        register("half", a_loss)
        raise ValueError("cannot register")

    manager = PluginManager(builtins=(), entry_point_group=None, env={}).load()
    manager.register_plugin(module_plugin("good", ahl_register_losses=lambda register: register("ok", a_loss)), "good")
    with pytest.warns(PluginLoadWarning, match="ValueError: cannot register"):
        manager.register_plugin(module_plugin("bad", ahl_register_losses=bad), "bad")
    assert manager.registry("losses").names() == ["ok"]
    assert manager.records["bad"].components == {}


def test_misspelled_hook_implementation_is_caught():
    manager = PluginManager(builtins=(), entry_point_group=None, env={"AHL_STRICT_PLUGINS": "1"}).load()
    typo = module_plugin("typo", ahl_register_model=lambda register: None)
    with pytest.raises(PluginError, match="ahl_register_model"):
        manager.register_plugin(typo, "typo")
    assert "typo" not in [name for name, _ in manager._pm.list_name_plugin()]


def test_duplicate_names_name_both_plugins():
    manager = PluginManager(builtins=(), entry_point_group=None, env={"AHL_STRICT_PLUGINS": "1"}).load()
    manager.register_plugin(
        module_plugin("first", ahl_register_losses=lambda register: register("same", a_loss)), "first"
    )
    with pytest.raises(PluginError) as excinfo:
        manager.register_plugin(
            module_plugin("second", ahl_register_losses=lambda register: register("same", a_loss)), "second"
        )
    assert isinstance(excinfo.value.__cause__, DuplicateComponentError)
    assert "by plugin 'first' and by plugin 'second'" in str(excinfo.value)


@pytest.mark.parametrize(
    ("hook", "value", "message"),
    [
        ("ahl_register_models", "not a spec", "not an ahl_plugins.ModelSpec"),
        ("ahl_register_losses", 42, "not a factory"),
        ("ahl_register_scorers", type("NoCombine", (), {"forward": lambda self: None}), "lacks combine"),
        ("ahl_register_feature_extractors", type("Half", (), {"extract": None}), "lacks fingerprint, spec"),
    ],
)
def test_invalid_components_are_rejected_with_the_plugin_named(hook, value, message):
    manager = PluginManager(builtins=(), entry_point_group=None, env={"AHL_STRICT_PLUGINS": "1"}).load()
    plugin = module_plugin("wrong", **{hook: lambda register: register("thing", value)})
    with pytest.raises(PluginError, match=f"registered by plugin 'wrong'.*{message}") as excinfo:
        manager.register_plugin(plugin, "wrong")
    assert isinstance(excinfo.value.__cause__, InvalidComponentError)


def test_options_must_be_a_pydantic_model():
    manager = PluginManager(builtins=(), entry_point_group=None, env={"AHL_STRICT_PLUGINS": "1"}).load()
    plugin = module_plugin("opts", ahl_register_losses=lambda register: register("l", a_loss, options=dict))
    with pytest.raises(PluginError, match="options= must be a pydantic BaseModel subclass"):
        manager.register_plugin(plugin, "opts")


def test_unknown_name_lists_available_providers_and_close_matches():
    manager = PluginManager(builtins=(), entry_point_group=None, env={}).load()
    manager.register_plugin(
        module_plugin(
            "p", ahl_register_losses=lambda register: (register("deviation", a_loss), register("bce", a_loss))
        ),
        "p",
    )
    with pytest.raises(UnknownComponentError) as excinfo:
        manager.get("losses", "deviaton")
    text = str(excinfo.value)
    assert "unknown loss 'deviaton'" in text
    assert "Did you mean: deviation?" in text
    assert "bce (from p), deviation (from p)" in text


def test_temporary_plugin_is_removed_afterwards():
    manager = PluginManager(builtins=(), entry_point_group=None, env={}).load()
    with manager.temporary_plugin(
        module_plugin("tmp", ahl_register_losses=lambda register: register("temp", a_loss)), "tmp"
    ) as record:
        assert record.components == {"losses": ["temp"]}
        assert "temp" in manager.registry("losses")
    assert "temp" not in manager.registry("losses")
    assert "tmp" not in manager.records


def test_option_validation_names_the_component():
    from pydantic import BaseModel, ConfigDict

    from ahl_plugins.errors import InvalidOptionsError

    class Opts(BaseModel):
        model_config = ConfigDict(extra="forbid")
        margin: float = 5.0

    manager = PluginManager(builtins=(), entry_point_group=None, env={}).load()
    manager.register_plugin(
        module_plugin("p", ahl_register_losses=lambda register: register("dev", a_loss, options=Opts)), "p"
    )
    entry = manager.get("losses", "dev")
    assert entry.parse_options({"margin": 3}).margin == 3.0
    with pytest.raises(
        InvalidOptionsError, match=r"invalid options for loss 'dev' \(from plugin 'p'\); valid options: margin"
    ):
        entry.parse_options({"margn": 3})
