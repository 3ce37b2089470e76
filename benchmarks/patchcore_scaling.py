"""Fit and score time and peak memory of the PatchCore-class reference at 1k and 10k training images.

Feature maps are synthetic (standard normal) with the real extractor's shape: EfficientNet-Lite0's stride-16
maps at 224 px and 112 px, ``N×112×14×14`` and ``N×112×7×7`` (the extractor's defaults); the cost of the
coreset and of the exact search depends on the shapes only, never on the values. Feature extraction is not
included (``docs/benchmarks/feature_throughput.md`` times it). Each configuration runs in its own process, so
its peak resident memory (``ru_maxrss``) is its own. Where the greedy coreset would take longer than
``--budget`` seconds, its first ``--probe`` steps are timed and the rest extrapolated (each step costs the
same: one matrix-vector product over all patches); the row says so::

    nice -n 10 python -m benchmarks.patchcore_scaling --threads 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from benchmarks.harness import PAGES, RESULTS, add_common_flags, command, open_rows, read_rows, write_page

SHAPES = ((112, 14, 14), (112, 7, 7))
CONFIGS = ((1000, 0.1), (1000, 0.01), (10000, 0.01), (10000, 0.001))
N_TEST = 100


def one(n: int, fraction: float, threads: int, budget: float, probe: int) -> dict:
    """One configuration, in this process: fit (patches, coreset, calibration) and score ``N_TEST`` images."""
    from ahl_plugins.evaluation.patchcore import PatchCoreOptions, PatchMemory
    from ahl_plugins.features.patch_memory import as_patches, kcenter_greedy

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    train = [torch.randn(n, *shape, generator=g) for shape in SHAPES]
    test = [torch.randn(N_TEST, *shape, generator=g) for shape in SHAPES]
    patches = sum(t.shape[0] * t.shape[2] * t.shape[3] for t in train)
    keep = int(round(fraction * patches))
    # a probe of the greedy selection on the larger scale decides whether the full fit fits the budget
    big = as_patches(train[0])
    started = time.perf_counter()
    kcenter_greedy(big, min(probe, len(big)), 64, torch.Generator().manual_seed(0))
    per_step = (time.perf_counter() - started) / min(probe, len(big))
    extrapolated = per_step * keep > budget
    row = {"n_train": n, "fraction": fraction, "patches": patches, "memory_patches": keep, "threads": threads}
    if extrapolated:
        row.update(fit_seconds=per_step * keep, score_seconds_per_image=None, extrapolated=True)
    else:
        started = time.perf_counter()
        memory = PatchMemory(PatchCoreOptions(coreset_fraction=fraction)).fit(train)
        fitted = time.perf_counter()
        memory.scores(test)
        row.update(
            fit_seconds=fitted - started,
            score_seconds_per_image=(time.perf_counter() - fitted) / N_TEST,
            extrapolated=False,
            memory_patches=sum(len(m) for m in memory.memories),
        )
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["features_mb"] = sum(t.numel() for t in train) * 4 / 2**20
    return row


def run(args: argparse.Namespace) -> None:
    rows = open_rows(args, key=lambda r: (r["n_train"], r["fraction"]))
    for n, fraction in CONFIGS:
        if (n, fraction) in rows:
            continue
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.patchcore_scaling",
            "--one",
            f"{n},{fraction}",
            "--threads",
            str(args.threads),
            "--budget",
            str(args.budget),
            "--probe",
            str(args.probe),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.add(json.loads(out))
        print(out, flush=True)


def page(args: argparse.Namespace) -> None:
    rows = sorted(read_rows(args.results), key=lambda r: (r["n_train"], -r["fraction"]))
    lines = [
        "# PatchCore-class reference: fit and score time and memory at 1k and 10k training images",
        "",
        "Made by `" + command("patchcore_scaling", ["--threads", "1"]) + "`; rows in "
        "`benchmarks/results/patchcore_scaling/`. Synthetic feature maps of the real extractor's shape "
        "(EfficientNet-Lite0 stride 16 at 224 px and 112 px: 112×14×14 + 112×7×7 per image, 245 patches); fit = "
        "patch memory + greedy coreset (random projection to 64 dimensions) + calibration on 64 training images; "
        f"score = exact nearest-patch search for {N_TEST} test images. Peak RSS of the process (features included). "
        "*extrapolated*: the greedy coreset's first steps timed and multiplied out (the fit would exceed the "
        "budget on this shared machine); the search is not run for those rows.",
        "",
        "| training images | coreset fraction | patches | memory patches | features (MB) | fit (s) | score (ms / image) | peak RSS (MB) | |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        score = "" if r["score_seconds_per_image"] is None else f"{1000 * r['score_seconds_per_image']:.0f}"
        lines.append(
            f"| {r['n_train']} | {r['fraction']:g} | {r['patches']} | {r['memory_patches']} | {r['features_mb']:.0f} | "
            f"{r['fit_seconds']:.0f} | {score} | {r['peak_rss_mb']:.0f} | {'extrapolated' if r['extrapolated'] else ''} |"
        )
    write_page(args.page, lines + [""], machine="other jobs running beside it (seconds are indicative).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(parser, results=RESULTS / "patchcore_scaling", page=PAGES / "patchcore_scaling.md")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--budget", type=float, default=600.0, help="seconds of coreset beyond which it is extrapolated"
    )
    parser.add_argument("--probe", type=int, default=300, help="greedy steps timed to decide and extrapolate")
    args = parser.parse_args(argv)
    if args.one:
        n, fraction = args.one.split(",")
        print(json.dumps(one(int(n), float(fraction), args.threads, args.budget, args.probe)))
        return
    torch.set_num_threads(args.threads)  # the page's footer reports the children's thread count
    if not args.report_only:
        run(args)
    page(args)


if __name__ == "__main__":
    main()
