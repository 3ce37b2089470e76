"""One tree's side of ``benchmarks.base_fit_time``: time the base fits with the ``ahl_plugins`` on the path.

``benchmarks.base_fit_time`` runs this module in a fresh process per tree, as
``python -m benchmarks.base_fit_time_worker`` with ``PYTHONPATH=<tree>:<this checkout>``: the tree's
``ahl_plugins`` and ``builtin_plugins`` come first, this package second. So it uses only API that both
the old and the new tree have, and prints one JSON line: the rows and where ``ahl_plugins`` came from.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time

import numpy as np
import torch

import ahl_plugins
from ahl_plugins.features.store import Features
from ahl_plugins.plugins import get_manager
from ahl_plugins.training.base import TrainOptions, train_base
from ahl_plugins.training.data import TrainingData
from benchmarks.harness import SHARED_DATA

SHARED = SHARED_DATA
MODELS = ("devnet", "dra")


def time_fits(epochs: int, threads: int) -> list[dict]:
    """``train_base`` and one scoring pass per case and model, with whichever ``ahl_plugins`` is importable."""
    torch.set_num_threads(threads)
    manager = get_manager()

    def thyroid() -> TrainingData:
        path = SHARED / "tabular" / "pmlb" / "ann_thyroid.tsv.gz"
        rng = np.random.default_rng(0)
        if path.is_file():
            with gzip.open(path, "rt") as f:
                table = np.loadtxt(f, delimiter="\t", skiprows=1)
            x, y = table[:, :-1], table[:, -1].astype(int)
        else:
            x, y = rng.standard_normal((7200, 21)), rng.choice([1, 2, 3], 7200, p=[0.03, 0.05, 0.92])
        train = rng.permutation(np.flatnonzero(y == 3))[: int(0.75 * (y == 3).sum())]
        seen = rng.choice(np.flatnonzero(y == 2), 10, replace=False)
        z = torch.as_tensor((x - x[train].mean(0)) / (x[train].std(0) + 1e-6), dtype=torch.float32)
        pool, pseudo = z[train], {}
        for i, name in enumerate(("feature_swap", "feature_shift")):
            entry = manager.get("pseudo_anomaly_generators", name)
            g = torch.Generator().manual_seed(i)
            rows = pool[torch.randint(len(pool), (512,), generator=g)]
            pseudo[name] = Features((entry.factory(entry.parse_options({})).generate(rows, pool, g)[0],))
        return TrainingData(Features((pool,)), Features((z[seen],)), pseudo)

    def maps() -> TrainingData:
        g = torch.Generator().manual_seed(0)

        def f(n: int) -> Features:
            return Features(
                (torch.randn(n, 112, 14, 14, generator=g).relu(), torch.randn(n, 112, 7, 7, generator=g).relu())
            )

        return TrainingData(f(300), f(10), {"cutpaste": f(128), "draem": f(128)})

    def build(model: str, data: TrainingData):
        spec = manager.model(model)
        scorer_entry, loss_entry = manager.get("scorers", spec.scorer), manager.get("losses", spec.loss)
        torch.manual_seed(0)
        scorer = scorer_entry.factory(data.normals.spec, scorer_entry.parse_options(dict(spec.scorer_options)))
        return scorer, loss_entry.factory(loss_entry.parse_options(dict(spec.loss_options)))

    rows = []
    for case, data in (("ann_thyroid", thyroid()), ("maps", maps())):
        for model in MODELS:
            scorer, loss = build(model, data)  # warm-up: lazy imports and allocator
            train_base(scorer, loss, data, TrainOptions(epochs=1, batches_per_epoch=2), seed=0)
            scorer, loss = build(model, data)
            started = time.perf_counter()
            train_base(scorer, loss, data, TrainOptions(epochs=epochs), seed=0)
            trained = time.perf_counter()
            scorer.eval()
            with torch.no_grad():
                n = len(data.normals.scales[0])
                for i in range(0, n, 256):
                    scorer.combine(scorer([s[i : i + 256] for s in data.normals.scales]))
            rows.append(
                {
                    "case": case,
                    "model": model,
                    "train_s": trained - started,
                    "score_s": time.perf_counter() - trained,
                    "n_scored": n,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    rows = time_fits(args.epochs, args.threads)
    print(json.dumps({"ahl_plugins": ahl_plugins.__file__, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
