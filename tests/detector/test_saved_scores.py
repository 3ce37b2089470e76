"""Every built-in model scores exactly as stored under its seed, fitted fresh and after save/load.

The stored scores were written before the structure was rebuilt (issue 23); a failure here means a change of
behaviour, not of layout. Regenerate with ``python tests/detector/saved_scores.py`` only for a deliberate change.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from saved_scores import CASES, STORE, case_scores

STORED = json.loads(STORE.read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_scores_match_the_stored_ones(name, tmp_path):
    got = case_scores(name, tmp_path / "data", save_dir=tmp_path / "model")
    for key, expected in STORED[name].items():
        np.testing.assert_allclose(got[key], expected, rtol=1e-4, atol=1e-5, err_msg=f"{name}: {key}")
