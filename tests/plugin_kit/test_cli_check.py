"""``ahl plugins check``: the contract kit from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from plugin_kit_components import TinyScorer, good_plugin, make_plugin
from test_broken_components import CachingScorer, swapped_named

from ahl_plugins import hookimpl
from ahl_plugins.cli import cli
from ahl_plugins.plugins import get_manager


@pytest.fixture
def plugins(fresh_global_manager):
    """The global manager with the test plugins ``good`` and ``broken`` registered."""
    manager = get_manager()
    manager.register_plugin(good_plugin(), "good")
    manager.register_plugin(
        make_plugin(
            ahl_register_scorers=[("caching", CachingScorer), ("fine", TinyScorer)],
            ahl_register_losses=[("swapped", lambda options=None: swapped_named)],
        ),
        "broken",
    )
    return manager


def run(*args: str):
    return CliRunner().invoke(cli, ["plugins", "check", *args])


def test_check_passes_a_good_plugin(plugins) -> None:
    result = run("tiny")
    assert result.exit_code == 0, result.output
    # "tiny" is both a scorer and a model: both are checked
    assert "scorer 'tiny' (plugin good): ok" in result.output and "model 'tiny' (plugin good): ok" in result.output
    assert "  pass  scorer.functional-call [map, vector]" in result.output
    assert "2 passed, 0 failed" in result.output


def test_check_reports_the_broken_requirement_and_exits_1(plugins) -> None:
    result = run("broken")
    assert result.exit_code == 1
    assert "scorer 'caching' (plugin broken): FAILED" in result.output
    assert "FAIL  scorer.functional-call [map]" in result.output
    assert "ORIGINAL parameters" in result.output
    assert "loss 'swapped' (plugin broken): FAILED" in result.output and "FAIL  loss.signature" in result.output
    assert "scorer 'fine' (plugin broken): ok" in result.output
    assert "1 passed, 2 failed" in result.output


def test_check_json(plugins) -> None:
    result = run("broken", "--json")
    assert result.exit_code == 1
    reports = {r["name"]: r for r in json.loads(result.output)}
    assert reports["caching"]["failed"]["requirement"] == "scorer.functional-call"
    assert reports["caching"]["failed"]["feature_kind"] == "map"
    assert reports["fine"]["ok"] and "scorer.gradients [vector]" in reports["fine"]["passed"]


def test_check_one_kind(plugins) -> None:
    result = run("tiny", "--kind", "scorer")
    assert result.exit_code == 0 and "1 passed, 0 failed" in result.output and "model 'tiny'" not in result.output


def test_check_unknown_name_suggests(plugins) -> None:
    result = run("tinny")
    assert result.exit_code == 1
    assert "'tinny' is neither a loaded plugin nor a registered component. Did you mean: tiny" in result.output
    result = run("tinny", "--kind", "loss")
    assert result.exit_code == 1 and "unknown loss 'tinny'" in result.output


def test_plugin_tools_do_not_import_torch() -> None:
    code = (
        "import sys; import ahl_plugins.cli.plugin_tools, ahl_plugins.templates; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_commands_are_attached_to_the_plugins_group() -> None:
    result = CliRunner().invoke(cli, ["plugins", "--help"])
    assert result.exit_code == 0
    for command in ("check", "list", "new"):
        assert f"  {command} " in result.output


def test_check_a_plugin_that_failed_to_load(plugins) -> None:
    class Exploding:
        @staticmethod
        @hookimpl
        def ahl_register_scorers(register) -> None:
            raise RuntimeError("boom")

    with pytest.warns(UserWarning, match="boom"):
        plugins.register_plugin(Exploding, "exploding")
    result = run("exploding")
    assert result.exit_code == 1
    assert "plugin 'exploding' failed to load: RuntimeError: boom" in result.output
