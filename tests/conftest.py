"""Shared fixtures: an isolated plugin manager and the real-data location."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ahl_plugins import plugins

# The heads are tiny: on a 2-core machine one intra-op thread is several times faster than two.
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real data sets beside the checkout; skip where a fresh clone lacks them."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (present in CI, absent in a user's clone)")
    return SHARED_DATA


@pytest.fixture
def fresh_manager(monkeypatch):
    """Make get_manager() build a new manager for this test, and forget it afterwards."""
    plugins.reset_manager()
    yield plugins.get_manager
    plugins.reset_manager()
