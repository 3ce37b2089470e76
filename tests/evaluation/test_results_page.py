"""benchmarks.run_results' page: per M an at-a-glance table with intervals and verdicts, the tally, forest and CD.

The compare directories are written from synthetic cell rows with known gains (no fitting): DevNet gains
+0.05 on every split, DRA loses 0.05, so each row's verdict is known, and old summaries without intervals
(as tracked before the verdicts existed) must read the same as new ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from ahl_plugins.evaluation.combine import combine, load_compare
from ahl_plugins.evaluation.compare.storage import COMPARE_FILE, FORMAT
from ahl_plugins.evaluation.summary import summarise
from benchmarks.compare_catalogue import Part
from benchmarks.run_results import asked_for, write_page

PNG = b"\x89PNG\r\n\x1a\n"
EFFECT = {("devnet", "ahl"): 0.05, ("dra", "ahl"): -0.05}


def _rows(m: int, seed_offset: int) -> list[dict]:
    rng = np.random.default_rng(seed_offset)
    rows = []
    for seed in range(5):
        base = 0.7 + 0.05 * rng.standard_normal()
        for model, variant in (("knn", "knn"), ("devnet", "base"), ("devnet", "ahl"), ("dra", "base"), ("dra", "ahl")):
            value = base + EFFECT.get((model, variant), 0.0) + 0.002 * rng.standard_normal()
            rows.append(_cell(model, variant, m, seed, value))
        rows.append(_cell("patchcore", "knn", m, seed, 0.123))  # another label-free row: not the k-NN column
    return rows


def _cell(model: str, variant: str, m: int, seed: int, value: float) -> dict:
    return {
        "cell_id": f"{model}__{variant}__M{m}-s{seed}",
        "model": model,
        "variant": variant,
        "setting": "general",
        "n_anomalies": m,
        "seen_type": "all",
        "seed": seed,
        "status": "ok",
        "auc_roc": value,
        "auc_pr": value,
        "fit_seconds": 1.0,
        "train_seconds": 1.0,
        "score_seconds": 0.1,
    }


def _compare_dir(runs: Path, name: str, m: int, seed_offset: int, old_style: bool = False) -> Path:
    directory = runs / name
    directory.mkdir(parents=True)
    summary = summarise(_rows(m, seed_offset))
    summary.update(dataset=name, arguments={}, skipped=[])
    if old_style:  # as the tracked summaries were written: mean ± std and by_seed, no interval or verdict
        for gain in summary["gains"]:
            for metric in ("auc_roc", "auc_pr", "pixel_auroc", "pixel_aupro"):
                gain[metric] = {k: gain[metric][k] for k in ("mean", "std", "n", "by_seed")}
    arguments = {"data": name, "seeds": 5, "extractor": None, "epochs": None}
    created = "2026-12-07T00:00:00+0000"  # after AHL's current defaults: no stale mark
    (directory / COMPARE_FILE).write_text(
        json.dumps({"format": FORMAT, "created": created, "arguments": arguments, "machine": {}})
    )
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


@pytest.fixture
def page(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    parts = [
        Part("setA", "Set A", None, ["general"], [10]),
        Part("setB", "Set B", None, ["general"], [10]),
        Part("setA_m1", "Set A, M = 1", None, ["general"], [1]),
        Part("setC", "Set C", None, ["general"], [10]),
    ]
    _compare_dir(runs, "setA-s5", 10, 1)
    _compare_dir(runs, "setB-s5", 10, 2, old_style=True)
    _compare_dir(runs, "setA_m1-s5", 1, 3)
    args = argparse.Namespace(
        runs=runs,
        page=tmp_path / "docs" / "results.md",
        seeds=5,
        epochs=None,
        ablations=False,
        report_only=True,
        models=["devnet", "dra"],
        title="Results",
        peers=tmp_path / "none.jsonl",
    )
    return write_page(parts, args, {})


def test_each_m_gets_its_own_at_a_glance_table_with_intervals_and_verdicts(page: Path) -> None:
    text = page.read_text()
    assert text.index("## At a glance, M = 10") < text.index("## At a glance, M = 1\n")
    m10 = text.split("## At a glance, M = 10")[1].split("## At a glance, M = 1\n")[0]
    assert "| data | setting | AHL(devnet) | gain [95% CI] | verdict (MDE) |" in m10
    rows = [line for line in m10.splitlines() if line.startswith("| Set ")]
    assert [r.split(" | ")[0] for r in rows] == ["| Set A", "| Set B"]
    assert all("| helps (" in r and "| hurts (" in r for r in rows)
    best = text.split("## Best OSAD row")[1].split("\n## ")[0]
    assert "| Set A | general | 1 |" in best
    assert "0.123" not in m10 + best  # the k-NN columns are k-NN's, not PatchCore's
    assert "AHL(devnet) helps in 2 of 2 rows, hurts in 0 and has no detectable effect in 0" in m10
    assert "AHL(dra) helps in 0 of 2 rows, hurts in 2" in m10
    m1 = text.split("## At a glance, M = 1\n")[1]
    assert "AHL(devnet) helps in 1 of 1 rows" in m1
    assert "## Set C\n\nNot run yet" in text  # a catalogue part without a run says so


def test_page_shows_the_library_forest_plot_and_cd_diagram(page: Path) -> None:
    docs = page.parent
    for name in ("results_forest.png", "results_cd.png", "results_forest_M1.png"):
        assert (docs / name).read_bytes().startswith(PNG), name
        assert f"]({name})" in page.read_text()
    # one data set at M = 1: too few rows to rank, so no CD diagram there, and the page says why
    assert not (docs / "results_cd_M1.png").exists()
    assert "ranks need >= 3 methods on every row and >= 2 rows" in page.read_text()


def test_old_summaries_get_the_intervals_a_new_compare_would_write(tmp_path: Path) -> None:
    new = load_compare(_compare_dir(tmp_path, "new", 10, 7)).summary
    old = load_compare(_compare_dir(tmp_path, "old", 10, 7, old_style=True)).summary
    for a, b in zip(new["gains"], old["gains"], strict=True):
        assert a["auc_roc"]["verdict"] == b["auc_roc"]["verdict"]
        assert a["auc_roc"]["ci_low"] == pytest.approx(b["auc_roc"]["ci_low"])
        assert a["auc_roc"]["seeds_needed"] == b["auc_roc"]["seeds_needed"]


def test_combine_keeps_only_the_m_asked_for(tmp_path: Path) -> None:
    dirs = [_compare_dir(tmp_path, "a", 10, 1), _compare_dir(tmp_path, "b", 1, 2), _compare_dir(tmp_path, "c", 10, 3)]
    assert combine(dirs, n_anomalies=[10])["rows"] == ["a, general M=10", "c, general M=10"]
    assert len(combine(dirs)["rows"]) == 3


def test_a_part_runs_only_for_the_m_and_settings_asked_for() -> None:
    m1 = Part("nsl_kdd_m1", "NSL-KDD, M = 1", None, ["general", "hard"], [1])
    both = Part("mt", "Magnetic Tile", None, ["general"], [1, 10])
    args = argparse.Namespace(n_anomalies=[10], settings=["general", "hard"])
    assert not asked_for(m1, args) and asked_for(both, args)
    assert not asked_for(both, argparse.Namespace(n_anomalies=[10], settings=["hard"]))
