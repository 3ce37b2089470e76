"""docs/results.md's at-a-glance rows: rows run before AHL's current defaults are marked and tallied apart."""

from __future__ import annotations

import json

from benchmarks.compare_catalogue import Part
from benchmarks.results_glance import AHL_DEFAULTS_SINCE, STALE_MARK, GlanceRow, Run, glance_table, stale_note


def run(tmp_path, name: str, created: str) -> Run:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "compare.json").write_text(json.dumps({"created": created}), encoding="utf-8")
    return Run(Part(name, f"Data {name}", None, ["general"], [1]), directory, {})


def row(run: Run, gain: float, verdict: str) -> GlanceRow:
    block = {"mean": gain, "ci_low": gain - 0.01, "ci_high": gain + 0.01, "verdict": verdict, "n": 5}
    return GlanceRow(run, "general", "all", {"devnet": 0.9}, {"devnet": block}, 0.8)


def test_rows_before_the_current_defaults_are_marked_and_tallied_apart(tmp_path):
    old = run(tmp_path, "old", "2026-12-03T10:00:00+0000")
    new = run(tmp_path, "new", AHL_DEFAULTS_SINCE.replace("22:00", "23:00"))
    assert old.stale and not new.stale
    rows = [row(old, -0.3, "hurts"), row(new, 0.01, "no detectable effect")]
    table = glance_table(rows, ["devnet"])
    assert f"| Data old {STALE_MARK} |" in table[2] and "| Data new |" in table[3]
    note = stale_note(rows, ["devnet"])
    assert "1 of 2 rows" in note[0]
    assert "helps in 0 of 1 rows, hurts in 0" in note[2] and "+0.010" in note[2]


def test_a_page_of_current_runs_has_no_note_and_a_run_without_its_file_is_stale(tmp_path):
    new = run(tmp_path, "new", "2027-01-01T00:00:00+0000")
    assert stale_note([row(new, 0.0, "no detectable effect")], ["devnet"]) == []
    missing = Run(Part("gone", "Gone", None, ["general"], [1]), tmp_path / "gone", {})
    assert missing.stale
