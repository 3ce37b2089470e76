"""The documentation site's navigation covers every page in ``docs/`` (the strict build in CI checks the links)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# ``  - Title: path.md`` or ``  - path.md`` lines of mkdocs.yml's nav (read as text: PyYAML is a docs-extra package)
NAV_ENTRY = re.compile(r"^\s*-\s+(?:(?:\"[^\"]*\"|[^:]+):\s*)?([\w./-]+\.md)\s*$")


def nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") :]
    return [m.group(1) for line in nav.splitlines() if (m := NAV_ENTRY.match(line))]


def test_every_docs_page_is_in_the_navigation():
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    listed = nav_pages()
    assert sorted(set(pages) - set(listed)) == []
    assert sorted(set(listed) - set(pages)) == []  # and the nav names no page that is missing
    assert len(listed) == len(set(listed))
    assert any(page.startswith("benchmarks/") for page in listed) and "changelog.md" in listed


def test_the_api_reference_documents_the_public_api():
    reference = "\n".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))
    for target in (
        "ahl_plugins.detector.OSADDetector",
        "ahl_plugins.contracts",
        "ahl_plugins.hookspecs",
        "ahl_plugins.testing",
    ):
        assert f"::: {target}\n" in reference, target


def test_the_nav_reader_reads_titled_and_quoted_entries():
    assert NAV_ENTRY.match("      - Results: results.md").group(1) == "results.md"
    assert NAV_ENTRY.match('      - "ahl compare scaling": benchmarks/compare_scaling.md').group(1) == (
        "benchmarks/compare_scaling.md"
    )
    assert NAV_ENTRY.match("  - Guide:") is None
