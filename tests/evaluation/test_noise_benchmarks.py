"""benchmarks.training_noise and benchmarks.dra_heads: the statistics and head scores their pages rest on."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from ahl_plugins import OSADDetector
from ahl_plugins.evaluation.metrics import auc_roc
from benchmarks import dra_heads
from benchmarks import training_noise as noise


def _rows(split_effect: dict[int, float], seed_effect: dict[int, float], gain: dict[int, float]) -> dict:
    """Two cases × the given splits and seeds; AUC = 0.8 + split + seed (+ gain[seed] for AHL)."""
    rows = {}
    for case in ("a/x", "a/y"):
        for split, s_eff in split_effect.items():
            for seed, t_eff in seed_effect.items():
                for variant, extra in (("base", 0.0), ("ahl", gain[seed])):
                    rows[("dra", variant, case, split, seed)] = {
                        "model": "dra",
                        "variant": variant,
                        "case": case,
                        "family": "fam",
                        "split": split,
                        "train_seed": seed,
                        "auc_roc": 0.8 + s_eff + t_eff + extra,
                        "seconds": 1.0,
                    }
    return rows


def test_decompose_separates_training_spread_from_split_spread():
    splits = {0: -0.05, 1: 0.0, 2: 0.05}
    seeds = {1000: -0.01, 1001: 0.01}
    rows = _rows(splits, seeds, {1000: 0.0, 1001: 0.0})
    base = [r for k, r in rows.items() if k[1] == "base"]
    spread = noise._decompose(base)
    assert spread["training"] == pytest.approx(statistics.stdev([-0.01, 0.01]))
    assert spread["split"] == pytest.approx(statistics.stdev(list(splits.values())))


def test_gains_pair_on_split_and_seed_and_cluster_by_seed():
    rows = _rows({0: 0.0, 1: 0.1}, {1000: 0.0, 1001: 0.2, 1002: -0.1}, {1000: 0.01, 1001: 0.03, 1002: 0.05})
    by_seed = noise._gains(rows, "dra", {"a/x", "a/y"})
    assert {seed: statistics.fmean(v) for seed, v in by_seed.items()} == pytest.approx(
        {1000: 0.01, 1001: 0.03, 1002: 0.05}
    )
    assert all(len(v) == 4 for v in by_seed.values())  # 2 cases × 2 splits per seed
    assert noise.cluster_se(by_seed) == pytest.approx(statistics.stdev([0.01, 0.03, 0.05]) / 3**0.5)
    assert noise.cluster_se({1000: [0.1]}) is None


def test_page_has_one_row_per_family_and_ahl_variant(tmp_path):
    rows = _rows({0: 0.0, 1: 0.1}, {1000: 0.0, 1001: 0.2}, {1000: 0.01, 1001: 0.03})
    for key, row in list(rows.items()):
        if key[1] == "ahl":
            rows[(key[0], "ahl_inner_0.01", *key[2:])] = {
                **row,
                "variant": "ahl_inner_0.01",
                "auc_roc": row["auc_roc"] - 0.02,
            }
    page = tmp_path / "noise.md"
    noise.write_page(page, rows, ["dra"])
    text = page.read_text()
    assert "| fam | 2 | 4 × 2 |" in text
    assert "| ahl | +0.020 ± 0.011 (n 8) |" in text
    assert "| ahl_inner_0.01 | +0.000 ± 0.011 (n 8) |" in text


def test_head_aucs_negate_normality_and_match_the_detector_score():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(150, 6)), rng.normal(2.5, 1.0, size=(10, 6))]).astype(np.float32)
    y = np.r_[np.zeros(150), np.ones(10)].astype(int)
    detector = OSADDetector("dra", epochs=2, seed=0).fit(x, y)
    aucs = dra_heads.head_aucs(detector, x, y)
    assert set(aucs) == {"normal", "seen", "pseudo", "residual", "distance", "total"}
    assert aucs["total"] == pytest.approx(auc_roc(y, detector.decision_function(x)), abs=1e-6)
    raw = detector.scorer_(list(detector.features(x).scales))["normal"].detach().numpy()
    assert aucs["normal"] == pytest.approx(auc_roc(y, -raw))
