"""Hidden-type safety: in the hard setting, do the labelled heads pull unseen types below the label-free signal?

Per data set and seen type (the one anomaly type training labels), each model's test AUROC — which in the hard
setting is measured on the *unseen* types and the test normals only — beside the label-free rows on the very same
splits: pooled 5-NN (k-th and mean) and the PatchCore-class reference. Model rows are read from the results'
compare directories (``benchmarks/results/compare/<name>/results.csv``, the runs behind ``docs/results.md``);
reference rows from ``benchmarks/results/reference_rows/`` (``benchmarks.reference_rows``). Mean over the seeds
both sides have; nothing is fitted here::

    python -m benchmarks.hidden_type_safety
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.harness import PAGES, RESULTS, command, read_rows, write_page
from benchmarks.residual_patch_test import rows_under_defaults

COMPARES = {"mt": "mt_hard-s5-e10", "elpv": "elpv-s5-e10"}
MODELS = [
    ("devnet", "base", "DevNet"),
    ("devnet", "ahl", "AHL(DevNet)"),
    ("dra", "base", "DRA"),
    ("dra", "ahl", "AHL(DRA)"),
    ("residual_patch", "base", "residual_patch"),
]
REFERENCES = [("knn-kth", "5-NN k-th"), ("knn-mean", "5-NN mean"), ("patchcore", "PatchCore-class")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", type=Path, default=PAGES / "hidden_type_safety.md")
    args = parser.parse_args(argv)
    refs = defaultdict(dict)
    for r in read_rows(RESULTS / "reference_rows"):
        if r["setting"] == "hard":
            refs[(r["data"], r["seen_type"], r["form"])][r["seed"]] = r["auc_roc"]
    # the residual patch model's hard rows (benchmarks.residual_patch_test), under today's default image score
    residual = {
        (r["data"], r["seen_type"], int(r["seed"])): r["auc_roc"]
        for r in rows_under_defaults()
        if r["setting"] == "hard"
    }
    lines = [
        "# Hidden-type safety: unseen-type AUROC per seen type, models beside the label-free rows",
        "",
        "Made by `" + command("hidden_type_safety") + "` from the results' compare directories and "
        "`benchmarks/results/reference_rows/`. Hard setting, M = 10 labelled anomalies of the seen type; the test "
        "holds the other (unseen) types and the test normals, so every number is an unseen-type AUROC. Mean over "
        "the seeds where the reference rows exist (n); *margin* = the best labelled row (DRA, AHL(DRA) or "
        "residual_patch; `-`: not run, *(n k)*: run on k of the n seeds) minus the PatchCore-class "
        "row (negative: the labels cost the unseen types what the normals alone gave them). Test splits are only "
        "measured here; nothing is chosen on them.",
        "",
    ]
    for data, name in COMPARES.items():
        path = RESULTS / "compare" / name / "results.csv"
        if not path.is_file():
            continue
        models = defaultdict(dict)
        for r in csv.DictReader(path.open()):
            if r["setting"] == "hard" and r["status"] == "ok" and r.get("train_seed", "") in ("", "0", str(r["seed"])):
                models[(r["seen_type"], r["model"], r["variant"])][int(r["seed"])] = float(r["auc_roc"])
        types = sorted({k[0] for k in models})
        header = [label for *_, label in MODELS] + [label for _, label in REFERENCES]
        lines += [
            f"## {data}",
            "",
            "| seen type | n | " + " | ".join(header) + " | margin |",
            "|---|---|" + "---|" * (len(header) + 1),
        ]
        for (d, seen, seed), value in residual.items():
            if d == data:
                models[(seen, "residual_patch", "base")][seed] = value
        for seen in types:
            seeds = sorted(set(refs.get((data, seen, "patchcore"), {})))
            if not seeds:
                continue

            def mean(values: dict, seeds: list = seeds) -> float:
                got = [values[s] for s in seeds if s in values]
                return float(np.mean(got)) if got else float("nan")

            model_means = [mean(models.get((seen, m, v), {})) for m, v, _ in MODELS]
            ref_means = [mean(refs.get((data, seen, form), {})) for form, _ in REFERENCES]
            margin = float(np.nanmax(model_means[2:])) - ref_means[-1]
            counts = [len(set(models.get((seen, m, v), {})) & set(seeds)) for m, v, _ in MODELS]
            cells = [
                "-" if n == 0 else f"{v:.3f}" if n == len(seeds) else f"{v:.3f} (n {n})"
                for v, n in zip(model_means, counts, strict=True)
            ] + [f"{v:.3f}" for v in ref_means]
            lines.append(f"| {seen} | {len(seeds)} | " + " | ".join(cells) + f" | {margin:+.3f} |")
        lines.append("")
    write_page(args.page, lines, machine=None)


if __name__ == "__main__":
    main()
