"""Synthetic data and a fake, counting cell runner for the compare tests (no torch training)."""

from __future__ import annotations

import zlib

import numpy as np

from ahl_plugins.data.dataset import OSADDataset
from ahl_plugins.evaluation.compare import CellRun


def synthetic_dataset(counts: dict[str, int] | None = None, dim: int = 6, seed: int = 0) -> OSADDataset:
    """Normals near the origin; each anomaly type shifted along its own axis."""
    counts = counts or {"normal": 160, "alpha": 14, "beta": 14, "gamma": 3}
    rng = np.random.default_rng(seed)
    rows, types = [], []
    for axis, (kind, n) in enumerate(counts.items()):
        x = rng.normal(size=(n, dim))
        if kind != "normal":
            x[:, axis % dim] += 3.0
        rows.append(x)
        types += [kind] * n
    X = np.concatenate(rows).astype(np.float32)
    types_arr = np.asarray(types)
    labels = (types_arr != "normal").astype(np.int64)
    return OSADDataset(
        name="synthetic",
        input_kind="vector",
        inputs=X,
        labels=labels,
        types=types_arr,
        ids=[f"row:{i}" for i in range(len(X))],
        partition=np.full(len(X), "any"),
    )


class FakeRunner:
    """Scores = distance from the origin plus seeded noise (AHL a little less noisy); counts calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, cell, data) -> CellRun:
        self.calls.append(cell.id)
        rng = np.random.default_rng(zlib.crc32(cell.id.encode()))
        noise = {"knn": 0.4, "base": 1.2, "ahl": 0.8}.get(cell.variant, 1.0)
        scores = np.linalg.norm(np.asarray(data.test_inputs), axis=1) + noise * rng.normal(size=len(data.test_inputs))
        history = None
        if cell.variant.startswith("ahl"):
            weights = rng.dirichlet(np.ones(6), size=4)
            history = {
                "estimator": "sge",
                "epochs": [{"epoch": i + 1, "weights": w.tolist()} for i, w in enumerate(weights)],
                "tasks": [
                    {"index": t, "kind": "clusters", "support_cluster": t // 2, "query_cluster": t % 3}
                    for t in range(6)
                ],
            }
        return CellRun(
            scores=scores,
            fit_seconds=0.01,
            score_seconds=0.001,
            train_seconds=0.005,
            history=history,
            extractor="identity",
        )


class KillingRunner:
    """Runs ``inner``, but the worker running ``cell_id`` SIGKILLs itself mid-cell: once (a marker
    file remembers it died) or every time (``always``). Must only run in worker processes."""

    def __init__(self, inner, cell_id: str, marker: str, always: bool = False) -> None:
        self.inner, self.cell_id, self.marker, self.always = inner, cell_id, marker, always

    def __call__(self, cell, data) -> CellRun:
        import os
        import signal
        from pathlib import Path

        if cell.id == self.cell_id:
            marker = Path(self.marker)
            deaths = int(marker.read_text()) if marker.is_file() else 0
            if self.always or deaths == 0:
                marker.write_text(str(deaths + 1))
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner(cell, data)


class SlowRunner(FakeRunner):
    """A FakeRunner that takes ``seconds`` per cell (to hold a compare's lock for a while)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def __call__(self, cell, data) -> CellRun:
        import time

        time.sleep(self.seconds)
        return super().__call__(cell, data)


def _load_only_in(parent: int) -> FakeRunner:
    import os

    if os.getpid() != parent:
        raise ImportError("this runner cannot be imported in a worker")
    return UnloadableRunner()


class UnloadableRunner(FakeRunner):
    """A runner that unpickles in its own process only: workers fail as they start."""

    def __reduce__(self):
        import os

        return (_load_only_in, (os.getpid(),))
