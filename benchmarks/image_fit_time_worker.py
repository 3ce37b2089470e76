"""One tree's side of ``benchmarks.image_fit_time``: time DRA and AHL(DRA) image fits with the ``ahl_plugins`` on
the path (``PYTHONPATH=<tree>:<this checkout>``), in one process and in that order, as a compare grid fits them.

Prints one JSON line: the rows and where ``ahl_plugins`` came from. Uses only API both trees have.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import ahl_plugins
from benchmarks.harness import SHARED_DATA


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_DATA / "mt"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from ahl_plugins.data.load import load_dataset
    from ahl_plugins.data.protocols import make_split
    from ahl_plugins.detector import OSADDetector

    dataset = load_dataset(args.data)
    split = make_split(dataset, "general", n_anomalies=10, seed=0)
    train = [dataset.inputs[i] for i in split.train_indices]
    rows = []
    for ahl in (False, True):
        detector = OSADDetector(
            "dra", ahl=ahl, seed=0, progress=False, extractor="efficientnet_lite0", epochs=args.epochs
        )
        started = time.perf_counter()
        detector.fit(train, split.train_labels)
        rows.append({"model": "AHL(DRA)" if ahl else "DRA", "fit_s": time.perf_counter() - started})
    print(json.dumps({"ahl_plugins": ahl_plugins.__file__, "rows": rows}))


if __name__ == "__main__":
    main()
