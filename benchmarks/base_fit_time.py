"""Base-model fit time now against an earlier commit's, on the same data: what the new heads cost.

Usage: ``python benchmarks/base_fit_time.py [--old-ref 8564041] [--repeats 3] [--threads 1]``

Issue 12 asks that DevNet's and DRA's fit stay within 1.5× of their time
before the vector heads, nearest-normal residuals, calibration and distance
head were added (commit ``8564041``, the state the issue was filed against).
The old tree is unpacked with ``git archive`` into a temporary folder and both
trees are timed in fresh subprocesses, alternating old/new ``--repeats``
times so that load on a shared machine hits both alike. Each subprocess times
``train_base`` (scorer preparation, the reference bank, the training loop
and, now, head calibration) and one scoring pass over the training normals
(nearest-normal search included), on:

- ``ann_thyroid``: 21 standardised features of the real set (synthetic rows
  of its shape when ``../shared/data`` is absent), 10 seen anomalies, 2×512
  pseudo anomalies from ``feature_swap`` / ``feature_shift``;
- ``maps``: random maps shaped like EfficientNet-Lite0's two taps
  (112×14×14, 112×7×7), 300 normals, 10 seen, 2×128 pseudo.

Each model trains its registered defaults for the given epochs. Writes
``docs/benchmarks/base_fit_time.md`` (medians over repeats).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_PAGE = ROOT / "docs" / "benchmarks" / "base_fit_time.md"
MODELS = ("devnet", "dra")


def _worker(code: Path, epochs: int, threads: int) -> list[dict]:
    """Runs inside the subprocess, importing ``ahl_plugins`` from ``code``; uses only API both trees have."""
    sys.path.insert(0, str(code))
    import numpy as np
    import torch

    from ahl_plugins.features.store import Features
    from ahl_plugins.plugins import get_manager
    from ahl_plugins.training.base import TrainOptions, train_base
    from ahl_plugins.training.data import TrainingData

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
            return Features((torch.randn(n, 112, 14, 14, generator=g).relu(), torch.randn(n, 112, 7, 7, generator=g).relu()))

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
            rows.append({"case": case, "model": model, "train_s": trained - started,
                         "score_s": time.perf_counter() - trained, "n_scored": n})
    return rows


def unpack(ref: str, into: Path) -> Path:
    """The tree of ``ref`` (its ``ahl_plugins`` and ``builtin_plugins``) under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "ahl_plugins", "builtin_plugins"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_tree(code: Path, epochs: int, threads: int) -> list[dict]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(code), "--epochs", str(epochs), "--threads", str(threads)],
        check=True, capture_output=True, text=True, cwd=tempfile.gettempdir(),
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def write_page(path: Path, old_ref: str, runs: dict[str, list[list[dict]]], epochs: int, threads: int) -> None:
    def median(tree: str, case: str, model: str, key: str) -> float:
        return statistics.median(r[key] for run in runs[tree] for r in run if r["case"] == case and r["model"] == model)

    lines = [
        "# Base-model fit time: now against before the new heads",
        "",
        (f"Generated by `python benchmarks/base_fit_time.py --old-ref {old_ref}`; do not edit by hand. "
        f"`train_base` time (preparation, reference bank, {epochs} epochs of 20 batches, head calibration) and one "
        "scoring pass over the training normals (nearest-normal search included), median over "
        f"{len(runs['now'])} alternating runs per tree, {threads} torch thread(s). *before*: commit `{old_ref}`, "
        "the state issue 12 was filed against; *now*: this checkout. Each model's registered defaults."),
        "",
        "| case | model | train s before | train s now | train ratio | score s before | score s now | score ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case in ("ann_thyroid", "maps"):
        for model in MODELS:
            tb, tn = median("before", case, model, "train_s"), median("now", case, model, "train_s")
            sb, sn = median("before", case, model, "score_s"), median("now", case, model, "score_s")
            lines.append(f"| {case} | {model} | {tb:.2f} | {tn:.2f} | {tn / tb:.2f}× | {sb:.3f} | {sn:.3f} | {sn / sb:.2f}× |")
    lines += [
        "",
        ("Cases: `ann_thyroid` (21 features, 10 seen, 2×512 pseudo vectors) and `maps` (random 112×14×14 + 112×7×7 "
        "maps, 300 normals, 10 seen, 2×128 pseudo). The train ratio is what issue 12 bounds by 1.5×."),
        "",
        (f"Machine: {platform.platform()}, Python {platform.python_version()}; other jobs may have run beside it, "
        "which the alternating order spreads over both trees."),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-ref", default="8564041")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--page", type=Path, default=DEFAULT_PAGE)
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_worker(args.worker, args.epochs, args.threads)))
        return 0
    runs: dict[str, list[list[dict]]] = {"before": [], "now": []}
    with tempfile.TemporaryDirectory() as tmp:
        old = unpack(args.old_ref, Path(tmp))
        for r in range(args.repeats):
            for tree, code in (("before", old), ("now", ROOT)):
                runs[tree].append(run_tree(code, args.epochs, args.threads))
                print(f"repeat {r} {tree}: " + ", ".join(f"{x['case']}/{x['model']} {x['train_s']:.1f}s"
                                                           for x in runs[tree][-1]), flush=True)
    write_page(args.page, args.old_ref, runs, args.epochs, args.threads)
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
