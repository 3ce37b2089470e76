"""The maintained peer: PyOD 3.x's supervised XGBOD and its DevNet on exactly our splits.

DeepOD 0.4.1 (``benchmarks.peers``) has had no release since 2023 and needs ``--no-deps`` against our
torch; PyOD 3.x is what users pick today. This runs PyOD's XGBOD (gradient boosting on the raw features
plus the scores of unsupervised detectors: supervised, a strong tabular baseline once labels exist) and
PyOD's DevNet on the splits and features ``benchmarks.peers`` gives DeepOD (the compare pipeline's own
``split_data``, z-scored with training statistics only), M = 10, seeds 0 .. N-1. The installed PyOD has no
Deep SAD (its ``deep_svdd`` is unsupervised), so DeepOD's DeepSAD stays the Deep SAD row.

Options: PyOD's defaults, except what makes a run reproducible and finishable here, each stated on the
page: DevNet gets ``random_seed`` = the split's seed, torch seeded with it, ``device="cpu"``; XGBOD
gets ``random_state`` = the seed, ``n_jobs=1`` and, by default, its own detector list without the 11
one-class SVMs (``--xgbod-detectors no_ocsvm``: an RBF SVM per nu is quadratic in the ~13k-34k training
rows of NSL-KDD and shuttle, hours per split on this machine); ``--xgbod-detectors default`` runs PyOD's
full list. Each finished (data, setting, seen type, detector, seed) is one JSON line appended to
``benchmarks/results/peers/pyod_rows.jsonl`` (tracked, resumable).

    nice -n 10 python -m benchmarks.pyod_peers --seeds 3       # runs what is missing, then the page
    python -m benchmarks.pyod_peers --report-only              # rebuild docs/benchmarks/peers.md

Install: ``pip install -e '.[pyod]'`` (PyOD needs no torch of its own; its DevNet imports ours).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import peers
from benchmarks.harness import PAGES, RESULTS, SHARED_DATA, add_common_flags, append_row, comma_list, read_rows

DEFAULT_ROWS = RESULTS / "peers" / "pyod_rows.jsonl"
DEFAULT_PAGE = PAGES / "peers.md"
DETECTORS = ("XGBOD", "DevNet")
#: the row name each detector gets on the page (DeepOD has a DevNet too)
LABEL = {"XGBOD": "PyOD XGBOD", "DevNet": "PyOD DevNet"}


def require_pyod() -> str:
    """PyOD's version; a clear exit when it (or XGBoost, which XGBOD needs) is missing."""
    try:
        from importlib.metadata import version

        found = version("pyod")
        version("xgboost")
    except Exception:  # noqa: BLE001 - any missing piece gets the same instruction
        raise SystemExit("benchmarks.pyod_peers needs PyOD 3.x and XGBoost: pip install -e '.[pyod]'") from None
    if int(found.split(".")[0]) < 3:
        raise SystemExit(f"benchmarks.pyod_peers measures PyOD 3.x, but {found} is installed")
    return found


def xgbod_detectors(which: str, n_train: int, seed: int) -> list[Any] | None:
    """XGBOD's unsupervised detector list: None (PyOD's default) or the default list less its one-class SVMs."""
    if which == "default":
        return None
    from pyod.models.hbos import HBOS
    from pyod.models.iforest import IForest
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF

    ks = [k for k in (1, 3, 5, 10, 20, 30, 40, 50) if k < n_train]
    return (
        [d for k in ks for d in (KNN(n_neighbors=k, method="largest"), LOF(n_neighbors=k))]
        + [HBOS(n_bins=b) for b in (5, 10, 15, 20, 25, 30, 50)]
        + [IForest(n_estimators=n, random_state=seed) for n in (10, 20, 50, 70, 100, 150, 200)]
    )


def make_detector(name: str, seed: int, n_train: int, xgbod: str) -> Any:
    if name == "XGBOD":
        from pyod.models.xgbod import XGBOD

        detectors = xgbod_detectors(xgbod, n_train, seed)
        flags = None if detectors is None else [type(d).__name__ not in ("HBOS", "IForest") for d in detectors]
        return XGBOD(estimator_list=detectors, standardization_flag_list=flags, random_state=seed, n_jobs=1)
    import torch
    from pyod.models.devnet import DevNet

    torch.manual_seed(seed)  # PyOD's DevNet seeds its sampler only, not the network's initial weights
    return DevNet(random_seed=seed, device="cpu")


def run_detector(name: str, split: peers.PeerSplit, seed: int, xgbod: str) -> dict[str, Any]:
    from ahl_plugins.evaluation.metrics import evaluate

    detector = make_detector(name, seed, len(split.x_train), xgbod)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # PyOD's DevNet prints every epoch's loss
        detector.fit(split.x_train, np.asarray(split.data.train_labels, dtype=np.int64))
    fitted = time.perf_counter()
    scores = np.asarray(detector.decision_function(split.x_test), dtype=np.float64)
    return {
        **evaluate(split.data.test_labels, scores),
        "fit_seconds": fitted - started,
        "score_seconds": time.perf_counter() - fitted,
    }


#: the sanity case's name in the rows: a split any supervised detector must rank almost perfectly
TOY = "toy_separable"


def toy_split(seed: int = 0) -> peers.PeerSplit:
    """2,000 N(0, I) normals and 10 labelled anomalies at N(3, I) in 10 dimensions; test 400 + 50 alike.

    Why: a peer that cannot rank this is broken, not weak, and its rows on real data must say so.
    """
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    x_train = np.r_[rng.normal(size=(2000, 10)), rng.normal(3.0, 1.0, size=(10, 10))].astype(np.float32)
    x_test = np.r_[rng.normal(size=(400, 10)), rng.normal(3.0, 1.0, size=(50, 10))].astype(np.float32)
    data = SimpleNamespace(
        train_labels=np.r_[np.zeros(2000, int), np.ones(10, int)],
        test_labels=np.r_[np.zeros(400, int), np.ones(50, int)],
    )
    return peers.PeerSplit(data, x_train, x_test)


def run(datasets: Sequence[peers.PeerData], args: argparse.Namespace) -> None:
    import torch

    from ahl_plugins.data.load import load_dataset
    from ahl_plugins.errors import DataError, InvalidOptionsError

    version = require_pyod()
    torch.set_num_threads(args.threads)
    done = {peers.row_key(r) for r in read_rows(args.results) if r.get("status") == "ok"}
    for name in args.detectors:  # the sanity case first: cheap, and it says whether the real rows mean anything
        base = {"data": TOY, "setting": "general", "seen_type": "all", "seed": 0, "n_anomalies": 10}
        if peers.row_key({**base, "detector": LABEL[name]}) not in done:
            row = {
                **base,
                "detector": LABEL[name],
                "pyod": version,
                "status": "ok",
                **run_detector(name, toy_split(), 0, args.xgbod_detectors),
            }
            append_row(args.results, row)
            done.add(peers.row_key(row))
            print(f"   {TOY} {LABEL[name]}: AUC-ROC {row['auc_roc']:.3f}", flush=True)
    for entry in datasets:
        dataset = load_dataset(entry.source, **entry.dataset_options)
        print(f"== {entry.title}", flush=True)
        for key in peers.split_keys(dataset, entry, range(args.seeds)):
            base = {
                "data": entry.name,
                "setting": key.setting,
                "seen_type": key.seen_type,
                "seed": key.seed,
                "n_anomalies": key.n_anomalies,
            }
            todo = [d for d in args.detectors if peers.row_key({**base, "detector": LABEL[d]}) not in done]
            if not todo:
                continue
            try:
                split = peers.peer_split(dataset, key)
            except (DataError, InvalidOptionsError) as exc:
                print(f"   {key.id}: skipped ({exc})", flush=True)
                continue
            for name in todo:
                row = {
                    **base,
                    "detector": LABEL[name],
                    "pyod": version,
                    "options": {"xgbod_detectors": args.xgbod_detectors} if name == "XGBOD" else {},
                }
                try:
                    row.update(status="ok", **run_detector(name, split, key.seed, args.xgbod_detectors))
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - one failing peer must not cost the rest
                    row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
                append_row(args.results, row)
                done.add(peers.row_key(row))
                shown = (
                    f"AUC-ROC {row['auc_roc']:.3f}, fit {row['fit_seconds']:.1f} s"
                    if row["status"] == "ok"
                    else row["reason"]
                )
                print(f"   {key.id} {LABEL[name]}: {shown}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.peers_page import write_page

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated families: nsl_kdd, pmlb, adbench (default: all)")
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--xgbod-detectors", choices=("no_ocsvm", "default"), default="no_ocsvm")
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    add_common_flags(parser, results=DEFAULT_ROWS, page=DEFAULT_PAGE, tagged=False)
    args = parser.parse_args(argv)
    args.detectors = comma_list(args.detectors)
    import torch

    torch.set_num_threads(args.threads)  # the page's footer states it, --report-only included
    if set(args.detectors) - set(DETECTORS):
        parser.error(f"detectors are {list(DETECTORS)}")
    families = peers.catalogue(args.data_root)
    chosen = comma_list(args.only) or list(families)
    if not args.report_only:
        run(peers.ordered(d for f in chosen for d in families[f]), args)
    write_page(args.page, read_rows(args.results), peers.ordered(d for f in families for d in families[f]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
