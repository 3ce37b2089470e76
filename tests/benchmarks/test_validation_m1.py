"""M = 1 validation: the cases train on one anomaly and keep M = 10's validation part; the M = 1 rule."""

from __future__ import annotations

import numpy as np

from ahl_plugins.data.arrays import from_arrays
from benchmarks.ahl_validation import row_key, rows_at
from benchmarks.validation_m1 import conclusion, decide, m1_section, paired_gains
from benchmarks.validation_splits import carved_case


def _dataset():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(130, 3))
    y = np.r_[np.zeros(100, int), np.ones(30, int)]
    return from_arrays(x, y, np.r_[["normal"] * 100, ["a"] * 15, ["b"] * 15])


def test_carved_case_at_m1_trains_one_anomaly_and_validates_on_the_m10_part():
    data = _dataset()
    ten, one = carved_case(data, "fam", "fam/x", 3), carved_case(data, "fam", "fam/x", 3, n_anomalies=1)
    assert int(ten.y_fit.sum()) == 5 and int(one.y_fit.sum()) == 1
    assert one.n_anomalies == 1 and ten.n_anomalies == 10
    np.testing.assert_array_equal(one.x_val, ten.x_val)  # the same validation part: rows pair across M
    np.testing.assert_array_equal(one.x_fit[one.y_fit == 0], ten.x_fit[ten.y_fit == 0])
    # the one anomaly is among M = 10's five
    anomaly = one.x_fit[one.y_fit == 1][0]
    assert any(np.array_equal(anomaly, a) for a in ten.x_fit[ten.y_fit == 1])


def test_old_rows_are_m10_and_rows_of_each_m_stay_apart():
    old = {"config": "ahl_p", "model": "dra", "case": "c", "seed": 0, "auc_roc": 0.5}
    new = {**old, "n_anomalies": 1, "auc_roc": 0.7}
    by_key = {row_key(old): old, row_key(new): new}
    assert rows_at(by_key, 10) == {("ahl_p", "dra", "c", 0): old}
    assert rows_at(by_key, 1) == {("ahl_p", "dra", "c", 0): new}


def _rows(gain: float, family: str, config: str = "ahl_p", reference: str = "base_p") -> dict:
    rows = {}
    for seed in range(6):
        noise = 0.01 * (seed % 3 - 1)
        rows[(reference, "dra", f"{family}/c", seed)] = {"auc_roc": 0.7, "family": family}
        rows[(config, "dra", f"{family}/c", seed)] = {"auc_roc": 0.7 + gain + noise, "family": family}
    return rows


def test_paired_gains_pair_on_case_and_seed():
    gains = paired_gains(_rows(0.05, "tabular, hard"), "ahl_p", "base_p", "dra")
    assert len(gains) == 6 and abs(np.mean(gains) - 0.05) < 1e-9


def test_a_default_changes_only_on_clean_evidence():
    clean_help = [0.05, 0.06, 0.04, 0.05]
    assert "beats" in decide(clean_help, clean_help)
    assert decide([0.05, -0.05, 0.0, 0.01], [0.05, -0.05]) == "no better than today's AHL at M = 1"
    # carved families may veto: helps on clean ones but hurts over all
    assert decide(clean_help, clean_help + [-0.2] * 20) == "no better than today's AHL at M = 1"
    assert decide([], [0.1, 0.1]) == "not measured on the clean families"


def test_section_reports_intervals_and_verdicts():
    m1 = {**_rows(0.05, "tabular, hard"), **_rows(0.05, "tabular, hard", "ahl_p_support1", "ahl_p")}
    text = "\n".join(m1_section(m1, {}))
    assert "+0.050 [" in text and "helps" in text and "**beats today's AHL at M = 1**" in text
    assert m1_section({}, {}) == []


def test_a_variant_that_only_shrinks_a_loss_to_the_base_changes_no_default():
    fam = "tabular, hard"
    rows = {**_rows(-0.2, fam), **_rows(0.1, fam, "ahl_p_support1", "ahl_p")}
    # ahl_p − base = −0.2; support1 − ahl_p = +0.1, so support1 − base ≈ −0.1: still below the base
    for seed in range(6):
        rows[("ahl_p_support1", "dra", f"{fam}/c", seed)]["auc_roc"] = 0.5 + 0.1 + 0.01 * (seed % 3 - 1)
        rows[("ahl_p", "dra", f"{fam}/c", seed)]["auc_roc"] = 0.5 + 0.003 * (seed % 2)
    assert "no default changes" in conclusion(rows, "dra", ["ahl_p_support1"])
    for seed in range(6):  # now the variant reaches the base: it becomes the M = 1 default
        rows[("ahl_p_support1", "dra", f"{fam}/c", seed)]["auc_roc"] = 0.7 + 0.01 * (seed % 3 - 1)
    assert "an M = 1 default" in conclusion(rows, "dra", ["ahl_p_support1"])
