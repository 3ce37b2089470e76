"""The AHL guard's choice reaches the detector's fit_info_ and `ahl compare`'s `ahl_guard` column (issue 31)."""

from __future__ import annotations

import numpy as np

from ahl_plugins.detector import OSADDetector
from ahl_plugins.evaluation.compare.storage import RESULT_FIELDS, guard_cell


def test_guard_cell_says_which_model_scored_and_why():
    record = {"enabled": True, "chosen": "base", "reason": "r", "evidence": {"ahl": 0.7123, "base": 0.9031}}
    assert guard_cell({"guard": record}) == "base (held-out AUC ahl 0.712, base 0.903)"
    assert guard_cell({"guard": {"enabled": False, "chosen": "ahl", "reason": "off"}}) == "off"
    assert guard_cell({"guard": {"enabled": True, "chosen": "ahl", "reason": "guard skipped: too few"}}) == "skipped"
    assert guard_cell({"guard": None}) is None and guard_cell(None) is None
    assert RESULT_FIELDS[-1] == "ahl_guard"


def test_an_ahl_fit_records_the_guard_and_guard_false_turns_it_off():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(120, 6)), rng.normal(size=(4, 6)) + 4.0]).astype(np.float32)
    y = np.r_[np.zeros(120), np.ones(4)].astype(int)
    fast = {
        "epochs": 2,
        "batches_per_epoch": 20,
        "n_pseudo": 60,
        "use_cache": False,
    }  # 20 batches: the guard's base loop (at AHL's update budget) is then the plain base loop
    guarded = OSADDetector("devnet", ahl=True, seed=0, **fast).fit(x, y)
    record = guarded.fit_info_["guard"]
    assert record["enabled"] and record["chosen"] in ("ahl", "base")
    assert record["held_out"]["normals"] == 24 and set(record["evidence"]) == {"ahl", "base"}
    assert guarded.history_["guard"]["chosen"] == record["chosen"]
    off = OSADDetector("devnet", ahl=True, seed=0, guard=False, **fast).fit(x, y)
    assert off.fit_info_["guard"]["enabled"] is False
    # the chosen model is refitted on all the data: the guarded fit scores as the unguarded one it chose
    chosen = off if record["chosen"] == "ahl" else OSADDetector("devnet", seed=0, **fast).fit(x, y)
    np.testing.assert_allclose(guarded.decision_function(x), chosen.decision_function(x), rtol=1e-5, atol=1e-6)
    assert OSADDetector("devnet", seed=0, **fast).fit(x, y).fit_info_["guard"] is None
