"""A compare's verdicts: every gain's interval, verdict and power in summary.json/md, DeLong per cell, forest plot, index.html."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from ahl_plugins.evaluation.compare import CompareConfig, run_compare
from ahl_plugins.evaluation.delong import delong_test
from ahl_plugins.evaluation.html_index import write_compare_index
from ahl_plugins.evaluation.significance import VERDICTS, paired_gain

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "maps"))
from fakes import FakeRunner, synthetic_dataset  # noqa: E402

FIELDS = ("mean", "std", "n", "ci_low", "ci_high", "verdict", "mde", "seeds_needed", "by_seed")


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    config = CompareConfig(
        data="synthetic",
        models=["devnet"],
        settings=["general"],
        n_anomalies=[5],
        seeds=3,
        ablations=True,
        progress=False,
    )
    result = run_compare(config, out, runner=FakeRunner(), dataset=synthetic_dataset())
    return out, result


def test_every_gain_has_interval_verdict_mde_and_seeds_needed(compared):
    out, _ = compared
    summary = json.loads((out / "summary.json").read_text())
    assert summary["significance"]["level"] == 0.95 and summary["significance"]["power"] == 0.8
    variants = {g["variant"] for g in summary["gains"]}
    assert variants == {"ahl", "ahl_uniform", "ahl_random_tasks", "ahl_ensemble"}  # AHL and each ablation, vs base
    for gain in summary["gains"]:
        block = gain["auc_roc"]
        assert set(FIELDS) <= set(block), gain
        assert block["verdict"] in VERDICTS
        expected = paired_gain(list(block["by_seed"].values()))
        assert (
            block["ci_low"] == pytest.approx(expected["ci_low"]) and block["seeds_needed"] == expected["seeds_needed"]
        )
    md = (out / "summary.md").read_text()
    assert "## Paired gains: intervals and verdicts" in md and "MDE (80% power)" in md and "seeds for ±0.01" in md
    assert "beyond one std" not in md


def test_delong_per_seed_matches_the_stored_scores(compared):
    out, result = compared
    summary = json.loads((out / "summary.json").read_text())
    gain = next(g for g in summary["gains"] if (g["variant"], g["setting"]) == ("ahl", "general"))
    assert set(gain["delong"]) == {"0", "1", "2"}
    cells = {
        (r["variant"], r["seed"]): r["cell_id"]
        for r in result.rows
        if r["setting"] == "general" and r["model"] == "devnet"
    }
    with (
        np.load(out / "cells" / f"{cells[('ahl', 1)]}.npz") as a,
        np.load(out / "cells" / f"{cells[('base', 1)]}.npz") as b,
    ):
        direct = delong_test(a["labels"], a["scores"], b["scores"])
    assert gain["delong"]["1"]["diff"] == pytest.approx(direct["diff"])
    assert gain["delong"]["1"]["p"] == pytest.approx(direct["p"])
    assert gain["delong"]["1"]["diff"] == pytest.approx(gain["auc_roc"]["by_seed"]["1"])  # the same AUC difference
    assert sum(gain["delong_counts"].values()) == 3


def test_forest_plot_and_index_page(compared):
    out, result = compared
    names = {p.name for p in result.plots}
    assert {"forest_auc_roc.png", "forest_auc_pr.png"} <= names
    page = (out / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert images[0] == "plots/forest_auc_roc.png"  # the verdicts lead
    assert sorted(images) == sorted(f"plots/{p.name}" for p in (out / "plots").glob("*.png"))
    assert '<td class="helps">' in page or "no detectable effect" in page
    assert '<a href="summary.md">' in page


def test_index_links_maps_pages_written_below_the_compare(compared, tmp_path):
    import shutil

    out, result = compared
    copy = tmp_path / "cmp"
    shutil.copytree(out, copy)
    (copy / "maps" / "devnet").mkdir(parents=True)
    (copy / "maps" / "devnet" / "index.html").write_text("<html></html>")
    write_compare_index(copy, (copy / "summary.md").read_text(), [], "Compare: synthetic")
    page = (copy / "index.html").read_text()
    assert '<a href="maps/devnet/index.html">anomaly maps: maps/devnet</a>' in page
    assert len(re.findall(r"<img ", page)) == len(list((copy / "plots").glob("*.png")))


def test_compare_page_loads_in_headless_chromium(compared):
    from browser import broken_images, chromium

    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser check needs a real browser")
    out, _ = compared
    count, broken = broken_images(out / "index.html", browser)
    assert count == len(list((out / "plots").glob("*.png"))) and broken == []


def test_train_seeds_pair_on_split_and_training_seed_with_splits_as_clusters(tmp_path):
    from ahl_plugins.cli.compare import compare
    from ahl_plugins.evaluation.significance import clustered_interval

    config = CompareConfig(
        data="synthetic",
        models=["devnet"],
        settings=["general"],
        n_anomalies=[5],
        seeds=3,
        train_seeds=2,
        progress=False,
    )
    result = run_compare(config, tmp_path, runner=FakeRunner(), dataset=synthetic_dataset(), plots=False)
    trained = [r for r in result.rows if r["variant"] != "knn"]
    assert len(trained) == 3 * 2 * 2 and len(result.rows) == 3 + 12  # k-NN is not trained: no replicates
    assert {(r["seed"], r["train_seed"]) for r in trained} == {(s, t) for s in range(3) for t in (s, 1000 + s)}
    assert any(r["cell_id"].endswith("-t1") for r in trained)
    summary = json.loads((tmp_path / "summary.json").read_text())
    (gain,) = summary["gains"]
    value = {(r["variant"], r["seed"], r["train_seed"]): r["auc_roc"] for r in trained}
    clusters = {s: [value[("ahl", s, t)] - value[("base", s, t)] for t in (s, 1000 + s)] for s in range(3)}
    expected = clustered_interval(clusters)
    block = gain["auc_roc"]
    assert block["replicates"]["ci_low"] == pytest.approx(expected["ci_low"])
    assert block["replicates"]["training_std"] == pytest.approx(expected["training_std"])
    assert block["by_seed"]["1"] == pytest.approx(np.mean(clusters[1]))  # a split's gain: mean over its training seeds
    assert block["n"] == 3  # seeds count splits, not fits
    assert set(gain["delong"]) == {"0", "0/1000", "1", "1/1001", "2", "2/1002"}
    md = (tmp_path / "summary.md").read_text()
    assert "Training noise and split noise in AUC-ROC" in md and "(splits as clusters)" in md
    assert json.loads((tmp_path / "compare.json").read_text())["arguments"]["train_seeds"] == 2
    assert "--train-seeds" in compare.get_help(compare.make_context("compare", ["--data", "x", "--output", "y"]))


def test_one_training_seed_keeps_old_directories_resumable():
    config = CompareConfig(data="synthetic", models=["devnet"], seeds=2)
    assert "train_seeds" not in config.identity()  # a compare.json written before --train-seeds still matches
    assert CompareConfig(data="synthetic", models=["devnet"], seeds=2, train_seeds=3).identity()["train_seeds"] == 3
