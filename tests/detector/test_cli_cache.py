"""`ahl cache info` and `ahl cache clear`."""

from __future__ import annotations

import torch
from click.testing import CliRunner

from ahl_plugins.cli import cli
from ahl_plugins.features.cache import FeatureCache


def test_cache_info_and_clear(tmp_path):
    store = FeatureCache(tmp_path)
    store.put("a" * 64, [torch.ones(3, 4)])
    store.put("b" * 64, [torch.zeros(2)])
    runner = CliRunner()
    info = runner.invoke(cli, ["cache", "info", "--cache-dir", str(tmp_path)])
    assert info.exit_code == 0 and ": 2 entries" in info.output
    refused = runner.invoke(cli, ["cache", "clear", "--cache-dir", str(tmp_path)], input="n\n")
    assert refused.exit_code != 0 and len(FeatureCache(tmp_path)) == 2
    cleared = runner.invoke(cli, ["cache", "clear", "--cache-dir", str(tmp_path), "--yes"])
    assert cleared.exit_code == 0 and "removed 2 cache entries" in cleared.output
    assert len(FeatureCache(tmp_path)) == 0
