"""Peak memory and images per second of ``ahl score`` at 1,000 and 10,000 large images, with and without maps.

Synthetic 8-bit grey JPEGs of 1-4 megapixels by default (``--min-side``/``--max-side``): ``--distinct`` different
images are generated once, and the 10,000 files of the largest folder are hard links cycling through them
(generating 10,000 multi-megapixel images costs more CPU than the machine has to spare; every file is still
opened, decoded and scored on its own, though the page cache keeps the few distinct files hot). Each folder
of N test images is a prefix of the next (hard links again). A small DevNet on EfficientNet-Lite0 is fitted
once; each ``ahl score`` then runs in its own process (``--no-cache``: nothing written to the feature cache),
wrapped by a process of this script that reports its child's peak resident memory (``ru_maxrss`` of
``RUSAGE_CHILDREN``), so every row measures exactly one run::

    nice -n 10 python -m benchmarks.score_memory --work /tmp/ahl_score_memory --sizes 1000,10000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import (
    PAGES,
    RESULTS,
    add_common_flags,
    comma_list,
    command,
    open_rows,
    read_rows,
    write_page,
)

N_TRAIN = 24
N_DEFECTS = 4
MODEL_OPTIONS = ("-o", "epochs=2", "-o", "n_pseudo=8", "--extractor", "efficientnet_lite0")


def config_name(args: argparse.Namespace) -> str:
    """One configuration's folder name: image sides and the extractor's input size."""
    return f"{args.min_side}-{args.max_side}px_s{args.extractor_size}"


def synthetic_image(rng: np.random.Generator, width: int, height: int, defect: bool = False) -> np.ndarray:
    """A smooth grey texture with mild noise (JPEG-friendly, like a surface under even light); ``defect``: a
    bright square."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    fx, fy = rng.uniform(60, 160, size=2)
    base = 110 + 35 * np.sin(x / fx) * np.cos(y / fy) + rng.normal(0, 4, (height, width)).astype(np.float32)
    if defect:
        side = max(16, min(width, height) // 8)
        top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
        base[top : top + side, left : left + side] += 90
    return np.clip(base, 0, 255).astype(np.uint8)


def generate(work: Path, sizes: list[int], distinct: int, sides: tuple[int, int]) -> dict[str, float]:
    """The fitting folder and one scoring folder per size (resumable: existing files are kept)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    started = time.perf_counter()
    pool = work / f"pool_{sides[0]}_{sides[1]}"
    pool.mkdir(parents=True, exist_ok=True)
    made = 0
    for i in range(distinct):
        path = pool / f"{i:05d}.jpg"
        width, height = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
        if not path.is_file():
            Image.fromarray(synthetic_image(np.random.default_rng(i), width, height)).save(path, quality=90)
            made += 1
    seconds = time.perf_counter() - started
    fit = work / f"fit_{sides[0]}_{sides[1]}"
    for part, n, defect in (("train/good", N_TRAIN, False), ("test/good", 4, False), ("test/spot", N_DEFECTS, True)):
        folder = fit / part
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            path = folder / f"{i:03d}.jpg"
            if not path.is_file():
                g = np.random.default_rng(10_000 + i + (500 if defect else 0) + (100 if part == "test/good" else 0))
                width, height = (int(v) for v in g.integers(sides[0], sides[1] + 1, size=2))
                Image.fromarray(synthetic_image(g, width, height, defect)).save(path, quality=90)
    for n in sizes:
        folder = work / f"score_{n}_{sides[0]}_{sides[1]}"
        (folder / "train" / "good").mkdir(parents=True, exist_ok=True)
        _link(pool / "00000.jpg", folder / "train" / "good" / "00000.jpg")
        test = folder / "test" / "good"
        test.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            _link(pool / f"{i % distinct:05d}.jpg", test / f"{i:05d}.jpg")
    pixels = [_pixels(p) for p in sorted(pool.glob("*.jpg"))]
    return {
        "generate_seconds": seconds,
        "generated": made,
        "megapixels_mean": float(np.mean(pixels)) / 1e6,
        "megapixels_range": [min(pixels) / 1e6, max(pixels) / 1e6],
    }


def _link(source: Path, target: Path) -> None:
    if not target.exists():
        os.link(source, target)


def _pixels(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        return image.width * image.height


def fit_model(work: Path, threads: int, sides: tuple[int, int], size: int) -> Path:
    model = work / f"model_{sides[0]}_{sides[1]}_s{size}"
    if not (model / "config.json").is_file():
        fit = work / f"fit_{sides[0]}_{sides[1]}"
        cmd = [sys.executable, "-m", "ahl_plugins", "fit", "--data", str(fit), "--output", str(model)]
        cmd += ["--n-anomalies", str(N_DEFECTS), "--cache-dir", str(work / "cache"), *MODEL_OPTIONS]
        cmd += ["--extractor-option", f"image_size={size}"]
        subprocess.run(cmd, check=True, env=_env(threads))
    return model


def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def measure(argv: list[str], threads: int) -> dict[str, float]:
    """Run ``ahl score`` (``argv``) as this process's only child: its wall time and peak RSS."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ahl_plugins", "score", *argv], check=False, env=_env(threads))
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"ahl score failed ({done.returncode}): {' '.join(argv)}")
    return {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def row_key(row: dict) -> tuple:
    """A row's configuration (the first rows, 1000-2000 px at 224, predate the side and size fields)."""
    sides = (row.get("min_side", 1000), row.get("max_side", 2000))
    return (row["n_images"], row["maps"], *sides, row.get("extractor_size", 224))


def run(args: argparse.Namespace) -> None:
    sizes = sorted(int(n) for n in comma_list(args.sizes))
    work = args.work
    info = generate(work, sizes, args.distinct, (args.min_side, args.max_side))
    print(json.dumps(info), flush=True)
    model = fit_model(work, args.threads, (args.min_side, args.max_side), args.extractor_size)
    rows = open_rows(args, key=row_key)
    for n in sizes:
        for maps in (False, True):
            if (n, maps, args.min_side, args.max_side, args.extractor_size) in rows:
                continue
            out = work / "out" / config_name(args) / f"{n}_{'maps' if maps else 'plain'}"
            out.mkdir(parents=True, exist_ok=True)
            data = work / f"score_{n}_{args.min_side}_{args.max_side}"
            argv = ["--model-dir", str(model), "--data", str(data), "--output", str(out / "scores.csv")]
            argv += ["--no-cache", "--chunk-size", str(args.chunk_size)]
            if maps:
                argv += ["--maps", str(out / "maps"), "--maps-max-side", str(args.maps_max_side)]
            wrapper = [sys.executable, "-m", "benchmarks.score_memory", "--measure", json.dumps(argv)]
            wrapper += ["--threads", str(args.threads)]
            result = json.loads(
                subprocess.run(wrapper, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
            )
            row = {
                "n_images": n,
                "maps": maps,
                "chunk_size": args.chunk_size,
                "maps_max_side": args.maps_max_side if maps else None,
                "images_per_second": n / result["seconds"],
                "distinct": args.distinct,
                "min_side": args.min_side,
                "max_side": args.max_side,
                "extractor_size": args.extractor_size,
                **result,
                **{k: v for k, v in info.items() if k.startswith("megapixels")},
                "threads": args.threads,
            }
            rows.add(row)
            print(json.dumps(row), flush=True)
            if maps and not args.keep_maps:
                subprocess.run(["rm", "-rf", str(out / "maps")], check=True)


def page(args: argparse.Namespace) -> None:
    rows = sorted(read_rows(args.results), key=lambda r: (-row_key(r)[4], row_key(r)[2], r["maps"], r["n_images"]))
    lines = [
        "# `ahl score` on large batches: peak memory and throughput",
        "",
        "Made by `" + command("score_memory", ["--sizes", args.sizes]) + "` (one run per image size, see the "
        "table); rows in `benchmarks/results/score_memory/`. A DevNet on EfficientNet-Lite0 (ImageNet weights, "
        f"input S and S/2 px) fitted on {N_TRAIN} synthetic normals and {N_DEFECTS} defects scores N synthetic "
        "8-bit grey JPEGs (smooth texture plus noise) in one `ahl score` process (`--no-cache`, `--chunk-size`); "
        "peak RSS is that process's `ru_maxrss` (its own, read by a wrapper process that runs nothing else). "
        "Maps: `--maps` with `--maps-max-side` (a raw `.npy` map and a PNG overlay written per image). Per "
        "configuration, `--distinct` images are generated and the N files are hard links cycling through them: "
        "every file is opened, decoded and scored on its own, but from a warm page cache.",
        "",
        "| images | megapixels | extractor S | maps | chunk | peak RSS (MB) | seconds | images / s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        maps = f"yes (<= {r['maps_max_side']} px)" if r["maps"] else "no"
        low, high = r["megapixels_range"]
        lines.append(
            f"| {r['n_images']:,} | {low:.2f}-{high:.2f} (mean {r['megapixels_mean']:.2f}) | {row_key(r)[4]} | "
            f"{maps} | {r['chunk_size']} | {r['peak_rss_mb']:.0f} | {r['seconds']:.0f} | {r['images_per_second']:.1f} |"
        )
    lines.append("")
    configs: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        configs.setdefault((*row_key(r)[1:],), {})[r["n_images"]] = r
    for (maps, low, high, size), by_n in configs.items():
        if len(by_n) >= 2:
            small, large = by_n[min(by_n)], by_n[max(by_n)]
            ratio = large["peak_rss_mb"] / small["peak_rss_mb"]
            lines.append(
                f"- {low}-{high} px images, S = {size}, {'with' if maps else 'without'} maps: peak RSS at "
                f"{large['n_images']:,} images is {ratio:.2f}x that at {small['n_images']:,} "
                f"({'within' if ratio <= 1.5 else 'ABOVE'} the 1.5x bound)."
            )
    lines += ["", *args.note, ""] if args.note else [""]
    notes = args.results / "notes.md"  # what the rows mean, written by hand after a run
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    write_page(args.page, lines, machine="2 cores shared with other jobs, run under nice (seconds are indicative).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(parser, results=RESULTS / "score_memory", page=PAGES / "score_memory.md")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ahl_score_memory"), help="images, model, outputs")
    parser.add_argument("--sizes", default="1000,10000", help="numbers of images to score")
    parser.add_argument("--distinct", type=int, default=400, help="distinct generated images")
    parser.add_argument("--min-side", type=int, default=1000, help="smallest image side (px)")
    parser.add_argument("--max-side", type=int, default=2000, help="largest image side (px)")
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--extractor-size", type=int, default=224, help="EfficientNet-Lite0 input side S")
    parser.add_argument("--maps-max-side", type=int, default=256)
    parser.add_argument("--keep-maps", action="store_true", help="keep the written maps (GBs at 10,000 images)")
    parser.add_argument(
        "--note", action="append", default=[], help="a line added under the table (also: <results>/notes.md)"
    )
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure), args.threads)))
        return
    if not args.report_only:
        run(args)
    page(args)


if __name__ == "__main__":
    main()
