"""One version source: ``ahl_plugins.__version__``, read by setuptools, printed by ``ahl --version``."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

import ahl_plugins

ROOT = Path(__file__).resolve().parents[2]


def test_ahl_version_prints_the_package_version():
    completed = subprocess.run(
        [sys.executable, "-m", "ahl_plugins", "--version"], capture_output=True, text=True, check=True, timeout=120
    )
    assert completed.stdout.splitlines()[0] == f"ahl-plugins {ahl_plugins.__version__}"


def test_setuptools_reads_the_same_version_without_importing_the_package():
    code = (
        "import sys; from setuptools.config.pyprojecttoml import read_configuration; "
        f"print(read_configuration({str(ROOT / 'pyproject.toml')!r})['project']['version']); "
        "print('torch' in sys.modules, 'ahl_plugins' in sys.modules)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    version, imported = completed.stdout.splitlines()[-2:]
    assert version == ahl_plugins.__version__
    assert imported == "False False"  # read statically: building the wheel never imports torch


def test_installed_metadata_agrees_when_this_checkout_is_the_installed_one():
    # pytest's pythonpath puts the checkout first, where an editable install leaves a bare egg-info (no
    # direct_url.json); the installed distribution is the one pip recorded its source for
    installed = [d for d in importlib.metadata.distributions(name="ahl-plugins") if d.read_text("direct_url.json")]
    if not installed:
        pytest.skip("ahl-plugins is not installed (pip install -e .); only the source version can be read")
    dist = installed[0]
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    installed_from = Path(unquote(urlparse(direct.get("url", "")).path)) if direct.get("url") else None
    if installed_from is None or installed_from.resolve() != ROOT:
        pytest.skip(f"the installed ahl-plugins comes from {installed_from or 'a wheel'}, not this checkout ({ROOT})")
    assert dist.version == ahl_plugins.__version__


def test_the_changelog_describes_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{ahl_plugins.__version__}]" in changelog and "## [0.1.0]" in changelog
