"""DeLong per cell pair of a compare directory: each gain on each seed, from the stored test scores.

Every finished cell keeps its test scores and labels in ``cells/<id>.npz``;
a variant and its base on the same split scored the same test samples, so
their AUC difference on that one split gets DeLong's interval. This is the
honest answer for a single seed, and per seed it shows whether a gain is
bigger than the test set's own sampling noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ahl_plugins.evaluation.delong import delong_test
from ahl_plugins.evaluation.grid import BASE
from ahl_plugins.evaluation.significance import counts

CellKey = tuple[str, str, str, int, str, int, int]  # model, variant, setting, M, seen type, seed, training seed


def load_cell_scores(output: Path, cell_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """A finished cell's test ``(labels, scores, test indices or None)`` from ``cells/<id>.npz``; None when absent."""
    path = output / "cells" / f"{cell_id}.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        indices = np.asarray(data["test_indices"]) if "test_indices" in data.files else None
        return np.asarray(data["labels"]), np.asarray(data["scores"]), indices


def pair_test(output: Path, cell_a: str, cell_b: str) -> dict[str, Any] | None:
    """DeLong for AUC(a) − AUC(b) when both cells' scores are stored and cover the same test samples."""
    a, b = load_cell_scores(output, cell_a), load_cell_scores(output, cell_b)
    if a is None or b is None or len(a[0]) != len(b[0]) or not np.array_equal(a[0], b[0]):
        return None
    if a[2] is not None and b[2] is not None and not np.array_equal(a[2], b[2]):
        return None
    if a[0].min() == a[0].max():  # one class only: no AUC
        return None
    result = delong_test(a[0], a[1], b[1])
    return {k: result[k] for k in ("diff", "se", "ci_low", "ci_high", "p", "verdict")}


def add_delong(output: str | Path, rows: Sequence[Mapping[str, Any]], gains: Sequence[dict[str, Any]]) -> None:
    """Give each per-type gain entry ``delong`` and ``delong_counts`` (win / tie / loss), in place.

    ``delong`` maps the split seed (``"<seed>/<training seed>"`` for replicates
    from ``--train-seeds``) to the test of that one split and fit.
    """
    output = Path(output)
    cells: dict[CellKey, str] = {}
    for row in rows:
        if row.get("status") == "ok":
            seed = int(row["seed"])
            train = seed if row.get("train_seed") is None else int(row["train_seed"])
            key = (row["model"], row["variant"], row["setting"], int(row["n_anomalies"]), row["seen_type"], seed, train)
            cells[key] = row["cell_id"]
    for entry in gains:
        group = (entry["model"], entry["variant"], entry["setting"], entry["n_anomalies"], entry["seen_type"])
        by_seed: dict[str, Any] = {}
        for key, cell_id in sorted(cells.items(), key=lambda kv: kv[0][5:]):
            if key[:5] != group:
                continue
            base = cells.get((entry["model"], BASE, *key[2:]))
            test = pair_test(output, cell_id, base) if base is not None else None
            if test is not None:
                seed, train = key[5], key[6]
                by_seed[str(seed) if seed == train else f"{seed}/{train}"] = test
        if by_seed:
            entry["delong"] = by_seed
            entry["delong_counts"] = counts([t["verdict"] for t in by_seed.values()])
