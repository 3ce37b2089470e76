"""How often the data-drift warning fires on normals it should accept, and on shifted copies it should catch.

For each data family and seed a DevNet is fitted on part of the training normals (plus a few labelled
defects); the rest of the training normals (held out) and the test normals are scored in production-sized
batches, each batch checked against the model's data profile (``ahl_plugins.drift``). A batch that warns is a
false alarm. The same test normals, brightened or resized, must warn (detection). Families: synthetic grey
textures (64 px, ResNet-18 with random weights) and Magnetic Tile (``../shared/data/mt``, EfficientNet-Lite0)::

    nice -n 10 python -m benchmarks.drift_false_alarms --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.harness import (
    PAGES,
    RESULTS,
    SHARED_DATA,
    add_common_flags,
    comma_list,
    command,
    open_rows,
    read_rows,
    write_page,
)

BATCH = 20
SHIFTS = (("brighter +20", 20, 1.0), ("brighter +50", 50, 1.0), ("darker -50", -50, 1.0), ("half size", 0, 0.5))


def synthetic(work: Path, seed: int) -> dict:
    from PIL import Image

    rng = np.random.default_rng(seed)

    def texture(side: int, defect: bool = False) -> np.ndarray:
        y, x = np.mgrid[0:side, 0:side].astype(np.float32)
        fx, fy = rng.uniform(6, 12, size=2)
        image = 110 + 30 * np.sin(x / fx) * np.cos(y / fy) + rng.normal(0, 6, (side, side))
        if defect:
            image[20:36, 20:36] = 250
        return np.clip(image, 0, 255).astype(np.uint8)

    def write(name: str, arrays) -> list[Path]:
        (work / name).mkdir(parents=True, exist_ok=True)
        paths = []
        for i, array in enumerate(arrays):
            paths.append(work / name / f"{i:04d}.png")
            Image.fromarray(array).save(paths[-1])
        return paths

    normals = write("normals", [texture(int(rng.integers(60, 73))) for _ in range(400)])
    return {
        "train": normals[:100],
        "held_out": normals[100:300],
        "test": normals[300:],
        "defects": write("defects", [texture(64, True) for _ in range(6)]),
        "options": {"extractor": "resnet18", "extractor_options": {"weights": "none", "image_size": 64}},
    }


def magnetic_tile(seed: int) -> dict:
    mt = SHARED_DATA / "mt"
    normals = sorted((mt / "train" / "good").glob("*"))
    order = np.random.default_rng(seed).permutation(len(normals))
    cut = int(0.75 * len(normals))
    defects = sorted(p for folder in sorted((mt / "test").iterdir()) if folder.name != "good" for p in folder.glob("*"))
    picks = np.random.default_rng(seed).choice(len(defects), 10, replace=False)
    return {
        "train": [normals[i] for i in order[:cut]],
        "held_out": [normals[i] for i in order[cut:]],
        "test": sorted((mt / "test" / "good").glob("*")),
        "defects": [defects[i] for i in sorted(picks)],
        "options": {"extractor": "efficientnet_lite0"},
    }


def shifted(paths: list[Path], folder: Path, brighter: int, scale: float) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L"), dtype=np.int16)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        copy = Image.fromarray(np.clip(array + brighter, 0, 255).astype(np.uint8)).resize(size, Image.BILINEAR)
        out.append(folder / f"{path.stem}.png")
        copy.save(out[-1])
    return out


def batches_warned(detector, paths: list[Path]) -> tuple[int, int, Counter]:
    """``(batches, batches that warned, causes by rule)`` over consecutive batches of ``BATCH``."""
    from ahl_plugins.errors import DataDriftWarning

    n, warned, causes = 0, 0, Counter()
    for start in range(0, len(paths) - BATCH + 1, BATCH):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            detector.decision_function(paths[start : start + BATCH])
        drift = [w for w in caught if issubclass(w.category, DataDriftWarning)]
        n += 1
        warned += bool(drift)
        for w in drift:
            causes.update(line.strip()[2:].split(":")[0] for line in str(w.message).splitlines()[1:])
    return n, warned, causes


def one(family: str, seed: int, cache: Path, work: Path) -> list[dict]:
    from ahl_plugins.detector import OSADDetector

    data = synthetic(work / "data", seed) if family == "synthetic" else magnetic_tile(seed)
    detector = OSADDetector("devnet", seed=seed, cache_dir=str(cache), **data["options"])
    detector.fit(data["train"] + data["defects"], [0] * len(data["train"]) + [1] * len(data["defects"]))
    rows = []
    cases = [("held-out training normals", data["held_out"], False), ("test normals", data["test"], False)]
    for name, brighter, scale in SHIFTS:
        cases.append((f"test normals, {name}", shifted(data["test"], work / name, brighter, scale), True))
    for name, paths, drifted in cases:
        n, warned, causes = batches_warned(detector, paths)
        rows.append(
            {"family": family, "seed": seed, "case": name, "drifted": drifted, "batches": n, "warned": warned}
            | {"causes": dict(causes), "n_train": len(data["train"])}
        )
        print(rows[-1], flush=True)
    return rows


def run(args: argparse.Namespace) -> None:
    rows = open_rows(args, key=lambda r: (r["family"], r["seed"], r["case"]))
    for family in comma_list(args.families):
        for seed in (int(s) for s in comma_list(args.seeds)):
            if (family, seed, "held-out training normals") in rows:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                for row in one(family, seed, args.cache, Path(tmp)):
                    rows.add(row)


def page(args: argparse.Namespace) -> None:
    rows = read_rows(args.results)
    lines = [
        "# Data-drift warning: false alarms on normals, detection of shifted copies",
        "",
        "Made by `" + command("drift_false_alarms", ["--seeds", args.seeds]) + "`; rows in "
        "`benchmarks/results/drift_false_alarms/`. Per family and seed a DevNet is fitted on training normals plus "
        "labelled defects; held-out training normals and the test normals are then scored in consecutive batches "
        f"of {BATCH}, each checked against the model's data profile (`ahl_plugins.drift`: read settings, raw range, "
        "image size, median brightness, median score). Normals that warn are false alarms; brightened, darkened "
        "or half-size copies of the test normals should warn. Synthetic: 400 grey textures 60-72 px (100 to fit, "
        "200 held out, 100 test), ResNet-18 with random weights at 64 px. Magnetic Tile: 75 % of `train/good` to "
        "fit (535), 25 % held out (179), the 238 `test/good` images, 10 random defects; EfficientNet-Lite0.",
        "",
        "| family | case | seeds | batches | warned | rate | causes |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], r["drifted"], r["case"]), []).append(r)
    for (family, _, case), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        n, warned = sum(r["batches"] for r in group), sum(r["warned"] for r in group)
        causes: Counter = Counter()
        for r in group:
            causes.update(r["causes"])
        shown = ", ".join(f"{k} {v}" for k, v in causes.most_common()) or "-"
        kind = "detection" if group[0]["drifted"] else "false alarm"
        lines.append(
            f"| {family} | {case} | {len(group)} | {n} | {warned} | {kind} {warned / max(n, 1):.0%} | {shown} |"
        )
    lines += ["", *args.note] if args.note else []
    notes = args.results / "notes.md"  # what the rows mean, written by hand after a run
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    write_page(args.page, [*lines, ""], machine="2 cores shared with other jobs.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(parser, results=RESULTS / "drift_false_alarms", page=PAGES / "drift_false_alarms.md")
    parser.add_argument("--families", default="synthetic,mt")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--note", action="append", default=[], help="a line added under the table (also: <results>/notes.md)"
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ahl_drift_cache")
    args = parser.parse_args(argv)
    if not args.report_only:
        run(args)
    page(args)


if __name__ == "__main__":
    main()
