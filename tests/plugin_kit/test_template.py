"""``ahl plugins new``: the skeleton installs with pip from its folder and passes the contract kit."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ahl_plugins.cli import cli
from ahl_plugins.plugins import PluginManager
from ahl_plugins.templates import (
    PluginNames,
    TemplateError,
    template_files,
    write_plugin_package,
)
from ahl_plugins.testing import check_all


def test_names_are_derived_and_validated() -> None:
    names = PluginNames.of("my-model_2")
    assert (names.module, names.dist, names.cls) == ("ahl_plugin_my_model_2", "ahl-plugin-my-model-2", "MyModel2")
    for bad in ("", "MyModel", "2fast", "bad name", "trailing_", "a--b"):
        with pytest.raises(TemplateError, match="invalid plugin name"):
            PluginNames.of(bad)


def test_skeleton_files_are_complete_and_valid(tmp_path: Path) -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    target = write_plugin_package("probe", tmp_path)
    assert target == tmp_path / "ahl-plugin-probe"
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert written == sorted(path.replace("__module__", "ahl_plugin_probe") for path, _ in template_files())
    assert "src/ahl_plugin_probe/plugin.py" in written and "tests/test_contract.py" in written
    for path in target.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "{{" not in text, f"unfilled field in {path}"
            if path.suffix == ".py":
                ast.parse(text, filename=str(path))
    project = tomllib.loads((target / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["ahl_plugins"] == {"probe": "ahl_plugin_probe.plugin"}
    assert project["project"]["name"] == "ahl-plugin-probe"
    # the hook module must not import torch (ahl plugins list stays fast)
    plugin_source = (target / "src/ahl_plugin_probe/plugin.py").read_text()
    top_level = [n for n in ast.parse(plugin_source).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("torch" in ast.unparse(n) for n in top_level)


def test_new_refuses_a_non_empty_folder_and_clashing_names(tmp_path: Path, fresh_global_manager) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["plugins", "new", "probe", "-d", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert f"pip install -e {tmp_path / 'ahl-plugin-probe'}" in first.output
    again = runner.invoke(cli, ["plugins", "new", "probe", "-d", str(tmp_path)])
    assert again.exit_code == 1 and "already exists and is not empty" in again.output
    assert runner.invoke(cli, ["plugins", "new", "probe", "-d", str(tmp_path), "--force"]).exit_code == 0
    clash = runner.invoke(cli, ["plugins", "new", "devnet", "-d", str(tmp_path)])
    assert clash.exit_code == 1
    assert "scorers 'devnet' (plugin builtin_plugins.devnet)" in clash.output and "Choose another name" in clash.output
    bad = runner.invoke(cli, ["plugins", "new", "Bad Name", "-d", str(tmp_path)])
    assert bad.exit_code == 1 and "invalid plugin name 'Bad Name'" in bad.output


@pytest.mark.slow
def test_generated_plugin_installs_with_pip_and_passes_the_kit(tmp_path: Path, fresh_global_manager) -> None:
    result = CliRunner().invoke(cli, ["plugins", "new", "kit_probe", "-d", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "ahl-plugin-kit-probe"
    site = tmp_path / "site"
    # --target keeps the shared environment clean; --no-index: no network needed
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(site),
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (site / "ahl_plugin_kit_probe-0.1.0.dist-info" / "entry_points.txt").is_file()

    sys.path.insert(0, str(site))
    try:
        manager = PluginManager(env={}).load()
        record = manager.records["kit_probe"]
        assert record.ok and record.distribution == "ahl-plugin-kit-probe" and record.version == "0.1.0"
        assert record.components == {"scorers": ["kit_probe"], "losses": ["kit_probe"], "models": ["kit_probe"]}
        reports = check_all("kit_probe", manager)
        assert [(r.kind, r.name) for r in reports] == [
            ("losses", "kit_probe"),
            ("scorers", "kit_probe"),
            ("models", "kit_probe"),
        ]
        assert all(r.ok and not r.skipped for r in reports)
    finally:
        sys.path.remove(str(site))
        for module in [m for m in sys.modules if m.startswith("ahl_plugin_kit_probe")]:
            del sys.modules[module]

    # the skeleton's own test suite, as its author would run it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "tests")],
        capture_output=True,
        text=True,
        cwd=folder,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout


def test_templates_ship_as_package_data() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "templates/**/*" in pyproject["tool"]["setuptools"]["package-data"]["ahl_plugins"]
