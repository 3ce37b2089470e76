"""The label-free reference rows on the published test splits (Magnetic Tile and ELPV, general and hard, M = 10).

Exactly the splits ``ahl compare`` draws (``ahl_plugins.evaluation.compare.splits.split_data``), the same code
as its reference rows (pooled k-NN k = 5, k-th and mean; PatchCore-class, coreset 0.1, seeded by the split
seed), but each memory is fitted once per distinct training-normal set: a reference reads no label, so the
general split and every hard split of a seed share it (Magnetic Tile's training normals are fixed by its
folders, ELPV's by the seed). This script only measures; nothing here chooses a default. One row per
(data, setting, seen type, seed, form); pixel AUROC / AUPRO where masks exist::

    nice -n 10 python -m benchmarks.reference_rows --seeds 5 --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
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

EXTRACTOR = "efficientnet_lite0"
SOURCES = {"mt": SHARED_DATA / "mt", "elpv": "elpv"}


def reference_scores(dataset, train_rows: np.ndarray, test_rows: np.ndarray, seed: int, masks: bool) -> dict:
    """Per form, scores of ``test_rows`` (and PatchCore's maps' pixel inputs), from the training normals."""
    from ahl_plugins.data.masks import image_size
    from ahl_plugins.evaluation.knn import build_extractor, knn_scores, pooled
    from ahl_plugins.evaluation.patchcore import PatchCoreOptions, PatchMemory, patchcore_maps
    from ahl_plugins.evaluation.pixel import METRIC_MAX_SIDE
    from ahl_plugins.features.cache import FeatureCache
    from ahl_plugins.features.pipeline import extract_features

    extractor = build_extractor("dra", EXTRACTOR, "image")
    extract = {"cache": FeatureCache(), "batch_size": 32, "device": "cpu", "progress": False}
    ref = extract_features(extractor, [dataset.inputs[i] for i in train_rows], **extract)
    test = extract_features(extractor, [dataset.inputs[i] for i in test_rows], **extract)
    out = {f"knn-{m}": knn_scores(pooled(ref), pooled(test), 5, m) for m in ("kth", "mean")}
    started = time.perf_counter()
    memory = PatchMemory(PatchCoreOptions(coreset_fraction=0.1, seed=seed)).fit(ref.scales)
    out["patchcore"] = memory.scores(test.scales)
    out["patchcore_seconds"] = time.perf_counter() - started
    if masks:
        sizes = [image_size(dataset.inputs[i]) for i in test_rows]
        out["maps"] = list(patchcore_maps(memory, test.scales, sizes, METRIC_MAX_SIDE))
    return out


def run(args: argparse.Namespace) -> None:
    from ahl_plugins.data.load import load_dataset
    from ahl_plugins.data.protocols import make_split
    from ahl_plugins.evaluation.compare.splits import resolve_hard_types
    from ahl_plugins.evaluation.grid import SplitKey
    from ahl_plugins.evaluation.metrics import auc_roc
    from ahl_plugins.evaluation.pixel import evaluate_maps

    rows = open_rows(args, key=lambda r: (r["data"], r["setting"], r["seen_type"], r["seed"], r["form"]))
    for name in comma_list(args.data):
        dataset = load_dataset(SOURCES[name])
        hard = resolve_hard_types(dataset, None)
        for seed in range(args.seeds):
            keys = [SplitKey("general", 10, "all", seed)] + [SplitKey("hard", 10, t, seed) for t in hard]
            todo = [k for k in keys if (name, k.setting, k.seen_type, seed, "patchcore") not in rows]
            if not todo:
                continue
            splits = {
                k: make_split(
                    dataset,
                    k.setting,
                    n_anomalies=10,
                    anomaly_type=None if k.setting == "general" else k.seen_type,
                    seed=seed,
                )
                for k in todo
            }
            groups = defaultdict(list)  # one memory per training-normal set
            for k, s in splits.items():
                normals = np.sort(s.train_indices[s.train_labels == 0])
                groups[hashlib.sha1(normals.tobytes()).hexdigest()].append((k, s, normals))
            for members in groups.values():
                normals = members[0][2]
                test_rows = np.unique(np.concatenate([s.test_indices for _, s, _ in members]))
                has_masks = getattr(dataset, "masks", None) is not None
                found = reference_scores(dataset, normals, test_rows, seed, has_masks)
                where = {int(r): i for i, r in enumerate(test_rows)}
                for k, s, _ in members:
                    pick = np.asarray([where[int(r)] for r in s.test_indices])
                    for form in ("knn-kth", "knn-mean", "patchcore"):
                        row = {
                            "data": name,
                            "setting": k.setting,
                            "seen_type": k.seen_type,
                            "seed": seed,
                            "form": form,
                            "auc_roc": float(auc_roc(s.test_labels, found[form][pick])),
                        }
                        if form == "patchcore":
                            row["fit_score_seconds"] = found["patchcore_seconds"]
                            if has_masks:
                                pixel = evaluate_maps(
                                    [found["maps"][i] for i in pick],
                                    [dataset.masks[i] for i in s.test_indices],
                                    [str(t) for t in dataset.types[s.test_indices]],
                                )
                                row.update(
                                    pixel_auroc=pixel["all"]["pixel_auroc"], pixel_aupro=pixel["all"]["pixel_aupro"]
                                )
                        rows.add(row)
                    print(
                        f"{name} {k.id}: "
                        + ", ".join(
                            f"{f} {rows.by_key[(name, k.setting, k.seen_type, seed, f)]['auc_roc']:.3f}"
                            for f in ("knn-kth", "knn-mean", "patchcore")
                        ),
                        flush=True,
                    )


def page(args: argparse.Namespace) -> None:
    rows = read_rows(args.results)
    by = defaultdict(list)
    for r in rows:
        by[(r["data"], r["setting"], r["form"])].append(r)
    lines = [
        "# Label-free reference rows on the published test splits",
        "",
        "Made by `" + command("reference_rows", ["--seeds", str(args.seeds), "--threads", "1"]) + "`; rows in "
        "`benchmarks/results/reference_rows/`. The splits of `ahl compare` (M = 10), EfficientNet-Lite0 features "
        "(the results' extractor). Image AUROC mean ± std over seeds (hard: each seed's mean over seen types first); "
        "pixel AUROC / AUPRO of the PatchCore-class maps where masks exist. Measured only: no choice reads these.",
        "",
        "| data | setting | form | seeds | image AUROC | pixel AUROC | AUPRO |",
        "|---|---|---|---|---|---|---|",
    ]
    for (data, setting, form), members in sorted(by.items()):
        per_seed = defaultdict(list)
        for r in members:
            per_seed[r["seed"]].append(r)

        def metric(key: str, per_seed: dict = per_seed) -> str:
            values = [np.mean([r[key] for r in rs]) for rs in per_seed.values() if all(key in r for r in rs)]
            return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else ""

        lines.append(
            f"| {data} | {setting} | {form} | {len(per_seed)} | {metric('auc_roc')} | {metric('pixel_auroc')} | "
            f"{metric('pixel_aupro')} |"
        )
    write_page(args.page, lines + [""], machine="other jobs running beside it.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_flags(parser, results=RESULTS / "reference_rows", page=PAGES / "reference_rows.md")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--data", default="mt,elpv")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.report_only:
        run(args)
    page(args)


if __name__ == "__main__":
    main()
