"""Shared fixtures of the plugin-kit tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # plugin_kit_components, whatever the import mode

from plugin_kit_components import bare_manager, good_plugin

from ahl_plugins.plugins import PluginManager, reset_manager


@pytest.fixture
def manager() -> PluginManager:
    """A manager holding only the test plugin ``good`` with one correct component of each kind."""
    manager = bare_manager()
    manager.register_plugin(good_plugin(), "good")
    return manager


@pytest.fixture
def fresh_global_manager():
    """The process-wide manager, rebuilt for the test and forgotten after it."""
    reset_manager()
    yield
    reset_manager()
