"""The compare loop with a fake runner: files, consistency, impossible splits, resume after a kill."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ahl_plugins.errors import InvalidOptionsError
from ahl_plugins.evaluation.compare import (
    KILL_AFTER_ENV,
    CompareConfig,
    load_results,
    run_compare,
)

sys.path.insert(0, str(Path(__file__).parent))
from fakes import FakeRunner, synthetic_dataset

HERE = Path(__file__).parent
ARGS = {
    "data": "synthetic",
    "models": ["devnet", "dra"],
    "settings": ["general", "hard"],
    "n_anomalies": [5],
    "seeds": 2,
    "progress": False,
}


def _run(out, runner=None, **overrides):
    config = CompareConfig(**{**ARGS, **overrides})
    return run_compare(config, out, runner=runner or FakeRunner(), dataset=synthetic_dataset(), plots=False)


def test_outputs_are_written_and_consistent(tmp_path):
    out = tmp_path / "cmp"
    runner = FakeRunner()
    result = _run(out, runner)
    for name in ("compare.json", "results.csv", "summary.json", "summary.md"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "results.csv").open()))
    # splits: general 2 seeds + hard (alpha, beta, gamma) x 2 seeds = 8; 5 cells each (knn + 2 models x 2)
    assert len(rows) == 40
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == len(runner.calls) == 30
    for row in ok:
        with np.load(out / "cells" / f"{row['cell_id']}.npz") as cell:
            assert (
                len(cell["scores"]) == len(cell["labels"]) == int(row["n_test_normals"]) + int(row["n_test_anomalies"])
            )
            from ahl_plugins.evaluation.metrics import auc_roc

            assert auc_roc(cell["labels"], cell["scores"]) == pytest.approx(float(row["auc_roc"]))
        assert (out / "cells" / f"{row['cell_id']}.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    for group in summary["groups"]:
        if group["seen_type"] == "mean":
            continue
        members = [
            r
            for r in ok
            if (r["model"], r["variant"], r["setting"], r["seen_type"])
            == (group["model"], group["variant"], group["setting"], group["seen_type"])
        ]
        assert group["auc_roc"]["mean"] == pytest.approx(np.mean([float(r["auc_roc"]) for r in members]))
        assert group["auc_pr"]["mean"] == pytest.approx(np.mean([float(r["auc_pr"]) for r in members]))
    gain = next(g for g in summary["gains"] if (g["model"], g["setting"], g["seen_type"]) == ("dra", "general", "all"))
    diffs = [
        float(a["auc_roc"]) - float(b["auc_roc"])
        for a in ok
        for b in ok
        if a["model"] == b["model"] == "dra"
        and a["setting"] == b["setting"] == "general"
        and a["seed"] == b["seed"]
        and a["variant"] == "ahl"
        and b["variant"] == "base"
    ]
    assert gain["auc_roc"]["mean"] == pytest.approx(np.mean(diffs))
    assert "AHL(dra)" in result.table and "k-NN" in result.table


def test_impossible_split_is_skipped_and_the_rest_runs(tmp_path):
    # gamma has 3 anomalies: M = 5 from it is impossible
    result = _run(tmp_path / "cmp")
    rows = load_results(tmp_path / "cmp")
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert {r["seen_type"] for r in skipped} == {"gamma"} and len(skipped) == 10
    assert all("only 3 anomalies of type 'gamma'" in r["reason"] for r in skipped)
    assert {r["seen_type"] for r in rows if r["status"] == "ok" and r["setting"] == "hard"} == {"alpha", "beta"}
    assert len(result.skipped) == 10
    assert "gamma" in result.table and "only 3 anomalies" in result.table


def test_one_type_dataset_hard_setting_is_skipped(tmp_path):
    config = CompareConfig(**{**ARGS, "settings": ["general", "hard"]})
    data = synthetic_dataset({"normal": 100, "alpha": 20})
    result = run_compare(config, tmp_path / "cmp", runner=FakeRunner(), dataset=data, plots=False)
    assert result.skipped and all("has only ['alpha']" in r["reason"] for r in result.rows if r["status"] == "skipped")
    assert sum(r["status"] == "ok" for r in result.rows) == 10  # the general setting ran


@pytest.mark.slow  # a few seconds of real processes; the full suite runs it
def test_resume_after_a_kill_recomputes_nothing_and_loses_nothing(tmp_path):
    out = tmp_path / "cmp"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from fakes import FakeRunner, synthetic_dataset
        from ahl_plugins.evaluation.compare import CompareConfig, run_compare
        run_compare(CompareConfig(**{ARGS!r}), {str(out)!r}, runner=FakeRunner(), dataset=synthetic_dataset(), plots=False)
        """
    )
    env = {**os.environ, KILL_AFTER_ENV: "7"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    before = {r["cell_id"]: r for r in load_results(out)}
    assert len(before) == 7 and not (out / "summary.json").exists()

    runner = FakeRunner()
    result = _run(out, runner)
    assert not set(runner.calls) & set(before), "a finished cell was recomputed"
    assert len(runner.calls) == 30 - 7
    after = {r["cell_id"]: r for r in load_results(out)}
    assert len(after) == 40
    for cell_id, row in before.items():
        assert after[cell_id] == row
    assert sorted(result.reused) == sorted(before)

    again = FakeRunner()
    _run(out, again)
    assert again.calls == []


def test_half_written_row_is_dropped_and_that_cell_rerun(tmp_path):
    out = tmp_path / "cmp"
    _run(out, settings=["general"])
    text = (out / "results.csv").read_text()
    last = text.rstrip("\n").rsplit("\n", 1)[1]
    cell_id = last.split(",")[0]
    (out / "results.csv").write_text(text[: len(text) - len(last) // 2 - 1])  # cut the last row mid-way
    runner = FakeRunner()
    _run(out, runner, settings=["general"])
    assert runner.calls == [cell_id]
    assert len(load_results(out)) == 10


def test_different_arguments_are_refused_naming_them(tmp_path):
    out = tmp_path / "cmp"
    _run(out, settings=["general"])
    with pytest.raises(InvalidOptionsError, match=r"seeds: was 2, now 3"):
        _run(out, settings=["general"], seeds=3)
    # where it runs is not part of what it computes
    _run(out, settings=["general"], device="cuda", cache_dir=str(tmp_path / "elsewhere"))


def test_refuses_a_non_empty_foreign_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(InvalidOptionsError, match="not empty"):
        _run(tmp_path)


def test_failed_cell_is_recorded_then_retried(tmp_path):
    out = tmp_path / "cmp"

    class Flaky(FakeRunner):
        def __call__(self, cell, data):
            if cell.model == "dra" and cell.variant == "ahl" and cell.split.seed == 1:
                raise MemoryError("out of memory")
            return super().__call__(cell, data)

    result = _run(out, Flaky(), settings=["general"])
    assert len(result.failed) == 1 and "MemoryError: out of memory" in result.rows[-1]["reason"]
    assert json.loads((out / "summary.json").read_text())["counts"]["failed"] == 1
    runner = FakeRunner()
    result = _run(out, runner, settings=["general"])
    assert runner.calls == result.computed == ["dra__ahl__general-M5-all-s1"]
    assert not result.failed
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 10 and all(r["status"] == "ok" for r in rows)


def test_results_written_before_new_columns_resume_and_unknown_columns_are_refused(tmp_path):
    """A results.csv from a version without the later columns (the pixel metrics) still resumes: its rows load
    and the file gets the current header; columns this version does not know are a clear error."""
    from ahl_plugins.errors import DataError
    from ahl_plugins.evaluation.compare.storage import RESULT_FIELDS, ResultsFile

    old_columns = [c for c in RESULT_FIELDS if not c.startswith("pixel")]
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=old_columns, lineterminator="\n")
        writer.writeheader()
        writer.writerow(
            dict.fromkeys(old_columns, "") | {"cell_id": "a", "status": "ok", "auc_roc": "0.75", "seed": "1"}
        )
    rows = ResultsFile(path).load()
    assert rows["a"]["auc_roc"] == 0.75 and rows["a"]["seed"] == 1 and rows["a"]["pixel_auroc"] is None
    assert tuple(next(csv.reader(path.open()))) == RESULT_FIELDS
    assert ResultsFile(path).load()["a"]["auc_roc"] == 0.75

    path.write_text("cell_id,status,colour\na,ok,red\n")
    with pytest.raises(DataError, match="colour"):
        ResultsFile(path).load()
