"""Which label-free reference form is strongest? Chosen on validation cases carved from training data only.

Forms, all on the features the detectors see (the family's extractor, its default scales):

- pooled k-NN (``pooled/k<k>/<kth|mean>``): maps global-average-pooled, scales concatenated; the distance to
  the k-th nearest training normal, or the mean over the k nearest (k in 1, 5, 10);
- patch (``patch/<scale>/f<fraction>``, image families only): the PatchCore-class reference
  (``ahl_plugins.evaluation.patchcore``): nearest normal patch, max over positions, on scale ``s0``
  (EfficientNet-Lite0 stride 16 at 224 px, 14×14), ``s1`` (the same at 112 px, 7×7) or ``both`` (mean of the
  calibrated per-scale maxima), memory cut to a greedy coreset of the given fraction.

Cases: Magnetic Tile and ELPV carved from the training part of the results' general split
(``benchmarks.validation_splits.carved_case``: 2/3 of the training normals are the memory, the other third and
5 labelled defects validate; the reference reads no label but to pick its normals), plus the vector families
of ``validation_splits`` for the pooled forms. One row per (case, seed, form)::

    nice -n 10 python -m benchmarks.image_references --seeds 5 --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import numpy as np
import torch

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

POOLED = [(k, m) for k in (1, 5, 10) for m in ("kth", "mean")]
FRACTIONS = (0.1,)
IMAGE_FAMILIES = ("mt", "elpv")
VECTOR_FAMILIES = ("nsl_kdd", "digits", "pmlb", "adbench")
EXTRACTOR = "efficientnet_lite0"


def image_cases(seeds: int, families: list[str]):
    from ahl_plugins.data.load import load_dataset
    from benchmarks.validation_splits import carved_case

    sources = {"mt": SHARED_DATA / "mt", "elpv": "elpv"}
    for family in families:
        if family not in sources:
            continue
        try:
            dataset = load_dataset(sources[family])
        except Exception as exc:  # noqa: BLE001 - a missing data set is skipped with its reason
            print(f"skipping {family}: {exc}", file=sys.stderr)
            continue
        for seed in range(seeds):
            yield carved_case(dataset, "image maps, general (carved)", f"{family}/general", seed)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from ahl_plugins.evaluation.metrics import auc_roc

    return float(auc_roc(labels, scores))


def image_rows(case, fractions: tuple[float, ...]) -> list[dict]:
    """Every form on one image case (features from the shared feature cache)."""
    from ahl_plugins.evaluation.knn import build_extractor, knn_scores, pooled
    from ahl_plugins.evaluation.patchcore import PatchCoreOptions, PatchMemory
    from ahl_plugins.features.cache import FeatureCache
    from ahl_plugins.features.pipeline import extract_features

    extractor = build_extractor("dra", EXTRACTOR, "image")
    normals = [p for p, y in zip(case.x_fit, case.y_fit, strict=True) if y == 0]
    extract = {"cache": FeatureCache(), "batch_size": 32, "device": "cpu", "progress": False}
    ref, val = extract_features(extractor, normals, **extract), extract_features(extractor, case.x_val, **extract)
    rows = []
    for k, method in POOLED:
        rows.append(
            {
                "form": f"pooled/k{k}/{method}",
                "auroc": auroc(case.y_val, knn_scores(pooled(ref), pooled(val), k, method)),
            }
        )
    for fraction in fractions:
        started = time.perf_counter()
        memory = PatchMemory(PatchCoreOptions(coreset_fraction=fraction, seed=case.seed)).fit(ref.scales)
        raw = torch.cat(
            [
                torch.stack(memory.raw_scores([t[i : i + 64] for t in val.scales]), dim=1)
                for i in range(0, len(case.y_val), 64)
            ]
        )
        calibrated = (raw - memory.center) / memory.spread
        seconds = time.perf_counter() - started
        for s in range(raw.shape[1]):
            rows.append(
                {"form": f"patch/s{s}/f{fraction:g}", "auroc": auroc(case.y_val, raw[:, s].numpy()), "seconds": seconds}
            )
        rows.append(
            {
                "form": f"patch/both/f{fraction:g}",
                "auroc": auroc(case.y_val, calibrated.mean(dim=1).numpy()),
                "seconds": seconds,
            }
        )
    return rows


def vector_rows(case) -> list[dict]:
    from ahl_plugins.evaluation.knn import knn_reference

    return [
        {
            "form": f"pooled/k{k}/{method}",
            "auroc": auroc(
                case.y_val, knn_reference(case.x_fit, case.y_fit, case.x_val, model="dra", k=k, method=method)
            ),
        }
        for k, method in POOLED
    ]


def run(args: argparse.Namespace) -> None:
    from benchmarks.validation_splits import validation_cases

    rows = open_rows(args, key=lambda r: (r["case"], r["seed"], r["form"]))
    families = comma_list(args.families)
    vector = tuple(f for f in families if f in VECTOR_FAMILIES)
    cases = list(image_cases(args.seeds, families))
    if vector:
        cases += list(validation_cases(args.seeds, vector))
    for case in cases:
        if (case.name, case.seed, "pooled/k5/kth") in rows:
            continue
        started = time.perf_counter()
        found = image_rows(case, FRACTIONS) if case.is_image else vector_rows(case)
        for row in found:
            rows.add({"family": case.family, "case": case.name, "seed": case.seed, **row})
        print(f"{case.name} seed {case.seed}: {len(found)} forms, {time.perf_counter() - started:.0f} s", flush=True)


def page(args: argparse.Namespace) -> None:
    rows = read_rows(args.results)
    by = defaultdict(list)
    for r in rows:
        by[(r["case"], r["form"])].append(r["auroc"])
    cases = sorted({r["case"] for r in rows})
    forms = sorted({r["form"] for r in rows}, key=lambda f: (not f.startswith("pooled"), f))
    lines = [
        "# Label-free reference forms on validation cases (training data only)",
        "",
        "Made by `" + command("image_references", ["--seeds", str(args.seeds), "--threads", "1"]) + "`; rows in "
        "`benchmarks/results/image_references/`. Validation AUROC, mean ± std over seeds (n = seeds). Image cases "
        "are carved from the training part of the results' general split (2/3 of the training normals are the "
        "memory; the other third and 5 labelled defects validate); vector cases are `benchmarks.validation_splits`'s. "
        "`pooled/k<k>/<kth|mean>`: pooled k-NN; `patch/<s0|s1|both>/f<fraction>`: the PatchCore-class reference on "
        "EfficientNet-Lite0's stride-16 maps at 224 px (s0, 14×14), at 112 px (s1, 7×7) or both (mean of the "
        "calibrated per-scale maxima), coreset fraction f.",
        "",
        "| form | " + " | ".join(cases) + " | mean over cases |",
        "|---|" + "---|" * (len(cases) + 1),
    ]
    means: dict[str, float] = {}
    for form in forms:
        cells, per_case = [], []
        for case in cases:
            values = by.get((case, form))
            if not values:
                cells.append("")
                continue
            per_case.append(float(np.mean(values)))
            cells.append(f"{np.mean(values):.3f} ± {np.std(values):.3f} (n={len(values)})")
        means[form] = float(np.mean(per_case)) if len(per_case) == len(cases) else float("nan")
        lines.append(f"| {form} | " + " | ".join(cells) + f" | {means[form]:.3f} |")
    pairs = [
        ("pooled/k5/mean", "pooled/k5/kth"),
        ("pooled/k1/kth", "pooled/k5/mean"),
        ("patch/both/f0.1", "pooled/k5/kth"),
        ("patch/both/f0.1", "pooled/k5/mean"),
        ("patch/both/f0.1", "pooled/k1/kth"),
        ("patch/both/f0.1", "patch/s0/f0.1"),
        ("patch/both/f0.1", "patch/s1/f0.1"),
    ]
    seeds = defaultdict(dict)
    for r in rows:
        seeds[(r["case"], r["form"])][r["seed"]] = r["auroc"]
    lines += [
        "",
        "## Paired differences (same case and seed): mean ± std (n, pairs above zero)",
        "",
        "| a − b | " + " | ".join(cases) + " |",
        "|---|" + "---|" * len(cases),
    ]
    for a, b in pairs:
        cells = []
        for case in cases:
            x, y = seeds.get((case, a), {}), seeds.get((case, b), {})
            d = [x[k] - y[k] for k in sorted(set(x) & set(y))]
            cells.append(f"{np.mean(d):+.3f} ± {np.std(d):.3f} ({len(d)}, {sum(v > 0 for v in d)} up)" if d else "")
        lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    lines += ["", "## Best form per case (mean validation AUROC)", ""]
    for case in cases:
        best = max((f for f in forms if by.get((case, f))), key=lambda f: np.mean(by[(case, f)]))
        lines.append(f"- `{case}`: `{best}` {np.mean(by[(case, best)]):.3f}")
    write_page(args.page, lines + [""], machine="other jobs running beside it.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(parser, results=RESULTS / "image_references", page=PAGES / "image_references.md")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--families", default=",".join(IMAGE_FAMILIES + VECTOR_FAMILIES))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.report_only:
        run(args)
    page(args)


if __name__ == "__main__":
    main()
