"""Fixtures for plugin-host tests: throw-away distributions that importlib.metadata discovers."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest


def write_distribution(
    root: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """A minimal installed distribution: modules plus a dist-info with entry_points.txt."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[ahl_plugins]\n{lines}\n")
    return root


def forget_modules(*names: str) -> None:
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture
def isolated_path(tmp_path, monkeypatch):
    """A sys.path entry for distributions written by the test, removed afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    forget_modules("goodplug", "brokenplug", "typoplug")
