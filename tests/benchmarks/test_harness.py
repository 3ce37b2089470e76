"""benchmarks.harness: a run resumes past finished units, and the page writer adds the machine footer."""

from __future__ import annotations

import argparse

from benchmarks import harness


def _parse(results, page, *argv: str, tagged: bool = True) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    harness.add_common_flags(parser, results=results, page=page, tagged=tagged)
    return parser.parse_args(list(argv))


def _run(args: argparse.Namespace, units: list[int], fitted: list[int]) -> harness.ResumableRows:
    """A benchmark's loop: fit every unit not on disk yet, recording which ones it fitted."""
    rows = harness.open_rows(args, key=lambda row: (row["unit"],))
    for unit in units:
        if (unit,) in rows:
            continue
        fitted.append(unit)
        rows.add({"unit": unit, "auc_roc": unit / 10})
    return rows


def test_a_second_run_fits_only_the_units_not_on_disk(tmp_path):
    results = tmp_path / "results"
    first: list[int] = []
    _run(_parse(results, tmp_path / "page.md", "--tag", "one"), [1, 2], first)
    assert first == [1, 2]
    second: list[int] = []
    rows = _run(_parse(results, tmp_path / "page.md", "--tag", "two"), [1, 2, 3], second)
    assert second == [3]  # units 1 and 2 are in one.jsonl: a run under another tag skips them too
    assert sorted(rows.by_key) == [(1,), (2,), (3,)]
    assert [r["unit"] for r in harness.read_rows(results / "two.jsonl")] == [3]


def test_a_line_cut_short_by_a_kill_is_run_again_and_never_glued_to(tmp_path):
    path = tmp_path / "rows.jsonl"
    harness.append_row(path, {"unit": 1})
    with path.open("a") as handle:
        handle.write('{"unit": 2, "auc')  # killed mid-write
    args = _parse(path, tmp_path / "page.md", tagged=False)
    fitted: list[int] = []
    _run(args, [1, 2], fitted)
    assert fitted == [2]
    assert [r["unit"] for r in harness.read_rows(path)] == [1, 2]


def test_the_page_writer_adds_the_machine_footer_only_when_asked(tmp_path):
    page = harness.write_page(tmp_path / "docs" / "page.md", ["# Title", "", "body", ""], machine="a note.")
    text = page.read_text()
    assert text.startswith("# Title\n\nbody\n")
    assert "## Machine" in text and text.rstrip().endswith("thread(s), a note.")
    bare = harness.write_page(tmp_path / "bare.md", ["# Title", ""], machine=None)
    assert bare.read_text() == "# Title\n"


def test_pages_name_the_module_command():
    assert harness.command("dra_heads", ["--splits", "3"]) == "python -m benchmarks.dra_heads --splits 3"
