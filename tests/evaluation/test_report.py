from __future__ import annotations

import json

import pytest

from ahl_plugins.evaluation.report import format_table, write_summary
from ahl_plugins.evaluation.summary import chance_beyond_one_std, summarise


def _row(model, variant, seen, seed, roc, pr=0.5, setting="hard", m=10, status="ok"):
    return {
        "cell_id": f"{model}_{variant}_{seen}_{seed}",
        "model": model,
        "variant": variant,
        "setting": setting,
        "n_anomalies": m,
        "seen_type": seen,
        "seed": seed,
        "status": status,
        "auc_roc": roc,
        "auc_pr": pr,
        "fit_seconds": 1.0 if variant == "base" else 3.0,
        "train_seconds": 0.5 if variant == "base" else 1.5,
        "score_seconds": 0.1,
        "reason": "",
    }


ROWS = [
    _row("devnet", "base", "a", 0, 0.70),
    _row("devnet", "ahl", "a", 0, 0.75),
    _row("devnet", "base", "a", 1, 0.60),
    _row("devnet", "ahl", "a", 1, 0.70),
    _row("devnet", "base", "b", 0, 0.80),
    _row("devnet", "ahl", "b", 0, 0.78),
    _row("devnet", "base", "b", 1, 0.90),
    _row("devnet", "ahl", "b", 1, 0.96),
    _row("knn", "knn", "a", 0, 0.85),
    _row("knn", "knn", "a", 1, 0.87),
]


def _find(entries, **kw):
    (hit,) = [e for e in entries if all(e[k] == v for k, v in kw.items())]
    return hit


def test_group_stats_use_sample_std():
    summary = summarise(ROWS)
    base_a = _find(summary["groups"], model="devnet", variant="base", seen_type="a")
    assert base_a["auc_roc"]["mean"] == pytest.approx(0.65)
    assert base_a["auc_roc"]["std"] == pytest.approx(0.0707107, rel=1e-4)  # ddof = 1
    assert base_a["auc_roc"]["by_seed"] == {"0": 0.70, "1": 0.60}


def test_gain_is_paired_per_seed():
    summary = summarise(ROWS)
    gain_a = _find(summary["gains"], model="devnet", variant="ahl", seen_type="a")
    assert gain_a["auc_roc"]["by_seed"] == {"0": pytest.approx(0.05), "1": pytest.approx(0.10)}
    assert gain_a["auc_roc"]["mean"] == pytest.approx(0.075)


def test_mean_over_types_averages_types_per_seed_first():
    summary = summarise(ROWS)
    mean_base = _find(summary["groups"], model="devnet", variant="base", seen_type="mean")
    # seed 0: (0.70 + 0.80) / 2 = 0.75; seed 1: (0.60 + 0.90) / 2 = 0.75
    assert mean_base["auc_roc"]["mean"] == pytest.approx(0.75)
    assert mean_base["auc_roc"]["std"] == pytest.approx(0.0, abs=1e-12)
    mean_gain = _find(summary["gains"], model="devnet", variant="ahl", seen_type="mean")
    assert mean_gain["auc_roc"]["by_seed"] == {"0": pytest.approx(0.015), "1": pytest.approx(0.08)}
    times = _find(summary["times"], model="devnet", variant="ahl")
    assert times["train_ratio_vs_base"] == pytest.approx(3.0)


def test_written_summary_and_table(tmp_path):
    rows = ROWS + [_row("devnet", "base", "c", 0, None, status="skipped") | {"reason": "impossible split: only 3"}]
    summary = write_summary(rows, tmp_path, dataset="toy")
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["counts"] == {"ok": 10, "skipped": 1, "failed": 0}
    assert on_disk["skipped"][0]["reason"] == "impossible split: only 3"
    table = format_table(summary)
    assert "AHL(devnet)" in table and "k-NN" in table and "mean (2 of 3 types)" in table
    assert "skipped" in table and "impossible split: only 3" in table
    md = (tmp_path / "summary.md").read_text()
    assert "| seen type | k-NN | devnet | AHL(devnet) | gain |" in md
    assert "+0.075 ± 0.035" in md  # paired gain on type a


def test_chance_beyond_one_std_matches_simulated_null_gains():
    """With no effect, the mean of n normal gains falls more than one sample std below 0 at P(t_{n-1} < -sqrt n)."""
    import numpy as np

    rng = np.random.default_rng(0)
    for n, expected in ((3, 0.113), (5, 0.045), (10, 0.006)):
        gains = rng.normal(size=(200_000, n))
        simulated = float((gains.mean(1) < -gains.std(1, ddof=1)).mean())
        assert chance_beyond_one_std(n) == pytest.approx(expected, abs=1e-3)
        assert simulated == pytest.approx(chance_beyond_one_std(n), abs=3e-3)
    assert chance_beyond_one_std(1) is None


def test_report_keeps_the_names_its_old_importers_use():
    """benchmarks and ahl score import these from report; they now live in summary / tables / paper_tables."""
    from ahl_plugins.evaluation import paper_tables, report, summary, tables

    assert report.fmt is tables.fmt and report.render is tables.render
    assert report.stats is summary.stats and report.MEAN_TYPE == summary.MEAN_TYPE
    assert report.paper_tables is paper_tables.paper_tables and report.times_table is paper_tables.times_table
