"""`ahl plugins list`, `ahl --version`, and a torch-free `ahl --help`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import write_distribution

import ahl_plugins
from ahl_plugins import plugins
from ahl_plugins.cli import cli

PLUGIN = """
from ahl_plugins import hookimpl

@hookimpl
def ahl_register_losses(register):
    register("listedloss", lambda options: (lambda heads, labels: heads["score"].mean()))
"""


@pytest.fixture
def installed(isolated_path, monkeypatch):
    write_distribution(
        isolated_path,
        "listed-plug",
        "2.0",
        {"listedplug": "listedplug", "brokenplug": "brokenplug"},
        {"listedplug": PLUGIN, "brokenplug": "raise ImportError('needs libfoo')"},
    )
    monkeypatch.setattr(plugins, "_manager", plugins.PluginManager(builtins=(), env={}))
    yield
    sys.modules.pop("listedplug", None)
    plugins.reset_manager()


@pytest.mark.filterwarnings("ignore::ahl_plugins.plugins.PluginLoadWarning")
def test_list_text_shows_components_and_errors(installed):
    result = CliRunner().invoke(cli, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    assert "listedplug 2.0 (listed-plug)" in result.output
    assert "hooks: ahl_register_losses" in result.output
    assert "losses: listedloss" in result.output
    assert "brokenplug 2.0 (listed-plug)\n  ERROR: ImportError: needs libfoo" in result.output


@pytest.mark.filterwarnings("ignore::ahl_plugins.plugins.PluginLoadWarning")
def test_list_json(installed):
    result = CliRunner().invoke(cli, ["plugins", "list", "--json"])
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["listedplug"]["components"] == {"losses": ["listedloss"]}
    assert rows["listedplug"]["distribution"] == "listed-plug"
    assert rows["brokenplug"]["error"] == "ImportError: needs libfoo"


def test_list_all_includes_builtins(fresh_manager):
    result = CliRunner().invoke(cli, ["plugins", "list", "--all", "--json"])
    rows = json.loads(result.output)
    assert any(row["builtin"] and row["name"].startswith("builtin_plugins.") for row in rows)
    without = json.loads(CliRunner().invoke(cli, ["plugins", "list", "--json"]).output)
    assert not any(row["builtin"] for row in without)


@pytest.mark.filterwarnings("ignore::ahl_plugins.plugins.PluginLoadWarning")
def test_version_lists_loaded_plugins(installed):
    result = CliRunner().invoke(cli, ["--version"])
    assert result.output.startswith(f"ahl-plugins {ahl_plugins.__version__}\n")
    assert "listedplug 2.0 [ok]" in result.output
    assert "brokenplug 2.0 [FAILED]" in result.output


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from ahl_plugins.cli import cli\n"
        "try:\n    cli(['--help'], prog_name='ahl')\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'ahl --help imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: ahl" in result.stdout


def test_python_dash_m_runs_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "ahl_plugins", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Usage: ahl" in result.stdout
