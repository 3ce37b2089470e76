"""Feature-extraction throughput on the magnetic-tile images, cold and cached.

Usage: python -m benchmarks.feature_throughput [--n 100] [--device cpu] [--threads N] [--out FILE.md]

For each extractor at its default options (resnet18 with random weights, since
ImageNet weights cannot be fetched offline; efficientnet_lite0 with its
packaged ImageNet weights) it extracts features of ``n`` images into an empty
cache, reports images/s, the cache's size on disk, and the time of a second
run that reads everything back from the cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from ahl_plugins.features.cache import FeatureCache
from ahl_plugins.features.pipeline import extract_features
from benchmarks.harness import PAGES, SHARED_DATA, command
from benchmarks.harness import write_page as write_markdown

DEFAULT_DATA = SHARED_DATA / "mt" / "train" / "good"


def _extractors():
    from builtin_plugins.extractors import (
        EfficientNetLiteOptions,
        TorchvisionOptions,
        make_efficientnet_lite0,
    )
    from builtin_plugins.extractors.torchvision_cnn import TorchvisionExtractor

    yield (
        "resnet18 (weights=none, 448+224, layer4)",
        lambda: TorchvisionExtractor("resnet18", TorchvisionOptions(weights="none")),
    )
    yield "efficientnet_lite0 (imagenet, 224+112, stride16)", lambda: make_efficientnet_lite0(EfficientNetLiteOptions())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(name, build, paths, device, batch_size):
    extractor = build()
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp)
        extract_features(extractor, paths[:2], device=device, batch_size=batch_size)  # warm-up, uncached
        _sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        first = extract_features(extractor, paths, cache=cache, device=device, batch_size=batch_size)
        _sync(device)
        cold, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        size = cache.size_bytes()
        start = time.perf_counter()
        second = extract_features(extractor, paths, cache=cache, device=device, batch_size=batch_size)
        warm = time.perf_counter() - start
        assert all(torch.equal(a, b) for a, b in zip(first.scales, second.scales, strict=True))
        shapes = ", ".join("×".join(map(str, t.shape[1:])) for t in first.scales)
    return {
        "name": name,
        "cold_s": cold,
        "ips": len(paths) / cold,
        "cpu_per_image": cpu / len(paths),
        "cache_mb": size / 2**20,
        "per_image_kb": size / len(paths) / 2**10,
        "warm_s": warm,
        "speedup": cold / warm,
        "shapes": shapes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--page", "--out", type=Path, default=PAGES / "feature_throughput.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    paths = sorted(p for p in args.data.iterdir() if p.suffix.lower() in {".jpg", ".png"})[: args.n]
    if len(paths) < args.n:
        raise SystemExit(f"need {args.n} images under {args.data}, found {len(paths)}")
    device = torch.device(args.device)
    rows = []
    for name, build in _extractors():
        row = measure(name, build, paths, device, args.batch_size)
        print(row)
        rows.append(row)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU core(s)"
    lines = [
        "# Feature-extraction throughput",
        "",
        f"{len(paths)} magnetic-tile images (`shared/data/mt/train/good`, grayscale JPEGs of varying size), "
        f"batch {args.batch_size}, device `{device}` ({hardware}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op thread(s), Python {platform.python_version()}; "
        f"1-minute load average {load:.1f} when the run ended, on a machine shared with other jobs).",
        "Cold = decode + resize + both pyramid levels + writing the cache; cached = a second run over the same "
        "paths, reading every entry back (the backbone is not run). CPU s per image (process CPU time of the "
        "cold run) does not depend on how busy the machine was; images/s does.",
        "",
        "| extractor | output per image | cold (s) | images/s | CPU s per image | cache on disk (MiB) "
        "| per image (KiB) | cached run (s) | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['shapes']} | {r['cold_s']:.1f} | {r['ips']:.1f} | {r['cpu_per_image']:.2f} "
            f"| {r['cache_mb']:.1f} | "
            f"{r['per_image_kb']:.0f} | {r['warm_s']:.2f} | {r['speedup']:.0f}× |"
        )
    lines += [
        "",
        f"Regenerate with `{command('feature_throughput')}` (options: `--n`, `--device cuda`, `--page`).",
        "",
    ]
    write_markdown(args.page, lines, machine=None)  # device, threads and load are in the opening paragraph
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
