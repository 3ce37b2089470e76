"""Pages built from tracked results only must match what their script writes today: a rerun that lands its
result files without rebuilding the pages beside them (docs/results_paper.md once kept numbers two reruns old)
fails here, not in a reader's hands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import hidden_type_safety, labels_on_images, paper_table
from benchmarks.harness import ROOT

PAGES = [
    pytest.param("paper_table", paper_table.main, "docs/results_paper.md"),
    pytest.param("hidden_type_safety", hidden_type_safety.main, "docs/benchmarks/hidden_type_safety.md"),
    pytest.param("labels_on_images", labels_on_images.main, "docs/labels_on_images.md", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("script", "build", "page"), PAGES)
def test_page_matches_its_tracked_results(script: str, build: Callable[[list[str]], object], page: str, tmp_path: Path):
    fresh = tmp_path / Path(page).name
    build(["--page", str(fresh)])
    assert fresh.read_text(encoding="utf-8") == (ROOT / page).read_text(encoding="utf-8"), (
        f"{page} is stale: rebuild it with `python -m benchmarks.{script}`"
    )
