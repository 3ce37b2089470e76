"""Peers side by side: DeepOD 0.4.1's weakly supervised detectors on the splits of ``docs/results.md``.

Runs DeepOD's DevNet, PReNet, DeepSAD and RoSAS (tabular forms, their default
options) and the label-free 5-NN reference on exactly the vector splits that
``benchmarks.run_results`` gives our models:

* NSL-KDD and the PMLB sets (ann_thyroid, page_blocks, satimage, shuttle) as
  ``benchmarks/compare_catalogue.py`` defines them: general setting, and the hard setting
  with each of its seen types;
* the ADBench MVTec embeddings under ``embeddings/adbench_mvtec/*.npz``,
  general setting only (their rows carry no defect type);

M = 10 labelled anomalies, seeds 0, 1, 2. Splits come from the compare
pipeline itself (``ahl_plugins.evaluation.compare.split_data``, which calls
``make_split`` and refits NSL-KDD's encoding on the training rows), and the
features are what our DevNet and DRA see: the ``identity`` extractor with its
defaults, z-scored with statistics of the training rows (normals and the
labelled anomalies) only. The 5-NN row is ``ahl_plugins.evaluation.knn`` on
the same split, so its numbers must equal the k-NN row of ``docs/results.md``.

DeepOD gets ``device``, ``random_state`` (= the split's seed) and
``verbose=0``; every other option is its default (100 epochs) unless
``--epochs`` says otherwise, which the page then states. Each finished
(data, setting, seen type, detector, seed) is one JSON line appended and
fsynced to ``benchmarks/results/peers/results[-e<epochs>].jsonl``; a run started again skips
what is done (and retries what failed). Each page written also rewrites the tracked headline rows
(``benchmarks/results/peers/headline_auc_roc.jsonl``, see ``benchmarks/peer_rows.py``), which
``benchmarks.run_results`` puts beside ours.

    nice -n 15 python -m benchmarks.peers                 # everything, then the page
    python -m benchmarks.peers --only nsl_kdd --seeds 1 --epochs 2   # a quick pass
    python -m benchmarks.peers --report-only              # rebuild docs/benchmarks/peers_deepod.md

DeepOD is a benchmark-only dependency. DeepOD 0.4.1 pins ``torch<1.13.1``, so
it is installed without its dependencies (which would replace this project's
torch); its own imports need pandas and scipy (the ``peers`` extra)::

    pip install -e '.[peers]' && pip install --no-deps -r benchmarks/requirements-peers.txt
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.compare_catalogue import compare_parts
from benchmarks.harness import (
    PAGES,
    RESULTS,
    ROOT,
    SHARED_DATA,
    append_row,
    command,
    read_rows,
)
from benchmarks.harness import write_page as write_markdown
from benchmarks.peer_rows import PEER_ROWS, headline_row, write_peer_rows

DEFAULT_DATA = SHARED_DATA
DEFAULT_RUNS = RESULTS / "peers"  # DeepOD's raw rows; the page rebuilds from them
DEFAULT_PAGE = PAGES / "peers_deepod.md"  # peers.md: the family table with PyOD (benchmarks.pyod_peers)

DEEPOD_VERSION = "0.4.1"
INSTALL = "pip install -e '.[peers]' && pip install --no-deps -r benchmarks/requirements-peers.txt"
DETECTORS = ("DevNet", "PReNet", "DeepSAD", "RoSAS")
KNN_ROW = "5-NN"
KNN_K = 5
N_ANOMALIES = 10
#: The registered model whose vector extractor (and so whose features) the peers share: DevNet's and DRA's are
#: both ``identity`` with default options.
FEATURES_OF = "devnet"
#: The compare catalogue's benchmarks that hold vector data.
VECTOR_FAMILIES = ("nsl_kdd", "pmlb")
ADBENCH_DIR = Path("embeddings") / "adbench_mvtec"
#: Run last: by far the largest training set (about 34k normals per split).
LAST = ("pmlb_shuttle",)


@dataclass(frozen=True)
class PeerData:
    """One data set of the benchmark and the settings run on it."""

    name: str
    title: str
    source: str
    settings: tuple[str, ...]
    hard_types: tuple[str, ...] | None = None  # None: every type of the data set
    dataset_options: dict[str, Any] = field(default_factory=dict)
    kind: str = "tabular"  # or "embeddings": the page averages each kind separately


@dataclass(frozen=True)
class PeerSplit:
    """One split as the peers see it: the compare split plus its standardised features."""

    data: Any  # ahl_plugins.evaluation.compare.SplitData
    x_train: np.ndarray
    x_test: np.ndarray


# -- what runs ----------------------------------------------------------------------------


def catalogue(data_root: Path) -> dict[str, list[PeerData]]:
    """Families -> data sets: the compare catalogue's vector parts, then the ADBench embeddings."""
    parts = compare_parts(data_root)
    families: dict[str, list[PeerData]] = {}
    for family in VECTOR_FAMILIES:
        families[family] = [
            PeerData(
                part.name,
                part.title,
                part.data,
                tuple(part.settings),
                None if part.anomaly_types is None else tuple(part.anomaly_types),
                dict(part.dataset_options),
            )
            for part in parts[family]
            if N_ANOMALIES in part.n_anomalies
        ]
    families["adbench"] = [
        PeerData(
            f"adbench_mvtec_{npz.stem}",
            f"ADBench MVTec {npz.stem} (ResNet-18 embeddings)",
            str(npz),
            ("general",),
            kind="embeddings",
        )
        for npz in sorted((data_root / ADBENCH_DIR).glob("*.npz"))
    ]
    return families


def ordered(datasets: Iterable[PeerData]) -> list[PeerData]:
    datasets = list(datasets)
    return [d for d in datasets if d.name not in LAST] + [d for d in datasets if d.name in LAST]


def split_keys(dataset: Any, entry: PeerData, seeds: Sequence[int]) -> list[Any]:
    """The compare grid's split keys for this data set (same order, same seen types)."""
    from ahl_plugins.evaluation.compare import resolve_hard_types
    from ahl_plugins.evaluation.grid import build_splits

    hard = resolve_hard_types(dataset, entry.hard_types) if "hard" in entry.settings else []
    return list(build_splits(list(entry.settings), [N_ANOMALIES], hard, list(seeds)))


def peer_split(dataset: Any, key: Any) -> PeerSplit:
    """The split ``ahl compare`` builds for ``key`` and the features our vector models see on it.

    The extractor is fitted on all training rows, as :class:`OSADDetector` fits it, so the peers get the
    same standardisation (statistics of the training rows only; test rows never touch them).
    """
    import torch

    from ahl_plugins.evaluation.compare import split_data
    from ahl_plugins.evaluation.knn import build_extractor, pooled
    from ahl_plugins.features.pipeline import extract_features

    data = split_data(dataset, key)
    train = np.ascontiguousarray(data.train_inputs, dtype=np.float32)
    test = np.ascontiguousarray(data.test_inputs, dtype=np.float32)
    extractor = build_extractor(FEATURES_OF, None, "vector")
    extractor.fit(torch.from_numpy(train))
    x_train = pooled(extract_features(extractor, train, batch_size=4096))
    x_test = pooled(extract_features(extractor, test, batch_size=4096))
    return PeerSplit(data, x_train, x_test)


# -- running ------------------------------------------------------------------------------


def require_deepod() -> str:
    """DeepOD's version; a clear exit when it is missing or another version."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        found = version("deepod")
        import deepod.models.tabular  # noqa: F401 - its imports (pandas, scipy) must work too
    except PackageNotFoundError:
        raise SystemExit(
            f"benchmarks.peers needs DeepOD {DEEPOD_VERSION}, which is not installed. Install it with:\n"
            f"    {INSTALL}\n(--no-deps: DeepOD {DEEPOD_VERSION} pins torch<1.13.1, which would replace "
            "this project's torch)"
        ) from None
    except ImportError as exc:
        raise SystemExit(
            f"DeepOD is installed but cannot be imported ({exc}); install its imports with:\n    {INSTALL}"
        ) from None
    if found != DEEPOD_VERSION:
        raise SystemExit(
            f"benchmarks.peers measures DeepOD {DEEPOD_VERSION}, but {found} is installed; "
            f"pip install --no-deps deepod=={DEEPOD_VERSION}"
        )
    return found


def make_peer(name: str, seed: int, epochs: int | None, device: str) -> Any:
    """A DeepOD detector with its default options (``epochs`` overrides only when given)."""
    from deepod.models import tabular

    options: dict[str, Any] = {"device": device, "random_state": seed, "verbose": 0}
    if epochs is not None:
        options["epochs"] = epochs
    return getattr(tabular, name)(**options)


def run_peer(name: str, split: PeerSplit, seed: int, epochs: int | None, device: str) -> dict[str, Any]:
    from ahl_plugins.evaluation.metrics import evaluate

    detector = make_peer(name, seed, epochs, device)
    started = time.perf_counter()
    detector.fit(split.x_train, np.asarray(split.data.train_labels, dtype=np.int64))
    fitted = time.perf_counter()
    scores = np.asarray(detector.decision_function(split.x_test), dtype=np.float64)
    scored = time.perf_counter()
    return {
        **evaluate(split.data.test_labels, scores),
        "fit_seconds": fitted - started,
        "score_seconds": scored - fitted,
    }


def run_knn(split: PeerSplit) -> dict[str, Any]:
    """The label-free reference exactly as ``ahl compare`` computes it (its own extractor fit included)."""
    from ahl_plugins.evaluation.knn import knn_reference
    from ahl_plugins.evaluation.metrics import evaluate

    data, timings = split.data, {}
    scores = knn_reference(
        data.train_inputs, data.train_labels, data.test_inputs, model=FEATURES_OF, k=KNN_K, timings=timings
    )
    return {**evaluate(data.test_labels, scores), "fit_seconds": timings["fit"], "score_seconds": timings["score"]}


def load_rows(path: Path) -> dict[tuple, dict[str, Any]]:
    """The finished rows of a results file by :func:`row_key`; a rerun's row wins over an earlier one."""
    return {row_key(row): row for row in read_rows(path)}


def default_results(runs: Path = DEFAULT_RUNS) -> Path:
    """``results.jsonl`` (DeepOD's default epochs) when it exists, else the newest ``results-e<N>.jsonl``."""
    exact = results_path(runs, None)
    others = sorted(runs.glob("results-e*.jsonl"), key=lambda p: p.stat().st_mtime)
    return exact if exact.is_file() or not others else others[-1]


def commands_path(results: Path) -> Path:
    return results.with_suffix(".commands")


def row_key(row: dict[str, Any]) -> tuple:
    return (row["data"], row["setting"], row["seen_type"], row["detector"], int(row["seed"]))


def results_path(runs: Path, epochs: int | None) -> Path:
    return runs / ("results.jsonl" if epochs is None else f"results-e{epochs}.jsonl")


def run(datasets: Sequence[PeerData], args: argparse.Namespace) -> None:
    import torch

    from ahl_plugins.data.load import load_dataset
    from ahl_plugins.errors import DataError, InvalidOptionsError

    deepod_version = require_deepod()
    torch.set_num_threads(args.threads)
    results = results_path(args.runs, args.epochs)
    results.parent.mkdir(parents=True, exist_ok=True)
    with open(commands_path(results), "a", encoding="utf-8") as handle:  # which commands wrote this file
        handle.write(_command(args, keep_report_only=True) + "\n")
    done = {k: r for k, r in load_rows(results).items() if r["status"] != "failed"}
    rows_wanted = [KNN_ROW, *args.detectors]
    for entry in datasets:
        if not Path(entry.source).exists():
            print(f"== {entry.title}: skipped, data not found at {entry.source}", flush=True)
            continue
        dataset = load_dataset(entry.source, **entry.dataset_options)
        started = time.perf_counter()
        print(f"== {entry.title}", flush=True)
        for key in split_keys(dataset, entry, range(args.seeds)):
            base = {
                "data": entry.name,
                "setting": key.setting,
                "seen_type": key.seen_type,
                "seed": key.seed,
                "n_anomalies": key.n_anomalies,
            }
            todo = [d for d in rows_wanted if row_key({**base, "detector": d}) not in done]
            if not todo:
                continue
            try:
                split = peer_split(dataset, key)
            except (DataError, InvalidOptionsError) as exc:
                for name in todo:
                    append_row(
                        results, {**base, "detector": name, "status": "skipped", "reason": f"impossible split: {exc}"}
                    )
                print(f"   {key.id}: skipped ({exc})", flush=True)
                continue
            counts = {
                "n_train_normals": int((split.data.train_labels == 0).sum()),
                "n_train_anomalies": int((split.data.train_labels == 1).sum()),
                "n_test_normals": int((split.data.test_labels == 0).sum()),
                "n_test_anomalies": int((split.data.test_labels == 1).sum()),
                "n_features": int(split.x_train.shape[1]),
            }
            for name in todo:
                row = {
                    **base,
                    "detector": name,
                    **counts,
                    "epochs": None if name == KNN_ROW else args.epochs,
                    "deepod": None if name == KNN_ROW else deepod_version,
                }
                try:
                    measured = (
                        run_knn(split) if name == KNN_ROW else run_peer(name, split, key.seed, args.epochs, args.device)
                    )
                    row.update(status="ok", **measured)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - one failing peer must not cost the rest
                    row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
                append_row(results, row)
                done[row_key(row)] = row
                shown = (
                    f"AUC-ROC {row['auc_roc']:.3f}, fit {row['fit_seconds']:.1f} s"
                    if row["status"] == "ok"
                    else row["reason"]
                )
                print(f"   {key.id} {name}: {shown}", flush=True)
        print(f"== {entry.title}: {time.perf_counter() - started:.0f} s", flush=True)


# -- the summary another script imports ----------------------------------------------------


def summarise(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups of finished rows with mean ± std over seeds; hard settings also get their ``"mean"`` over types."""
    from ahl_plugins.evaluation.report import MEAN_TYPE, stats

    buckets: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("status") == "ok":
            buckets[(row["data"], row["setting"], row["seen_type"], row["detector"])].append(row)
    groups = []
    for (data, setting, seen, detector), members in buckets.items():
        entry: dict[str, Any] = {
            "data": data,
            "setting": setting,
            "n_anomalies": N_ANOMALIES,
            "seen_type": seen,
            "detector": detector,
        }
        for metric in ("auc_roc", "auc_pr"):
            by_seed = {int(r["seed"]): float(r[metric]) for r in members}
            entry[metric] = {**stats(list(by_seed.values())), "by_seed": dict(sorted(by_seed.items()))}
        for timing in ("fit_seconds", "score_seconds"):
            entry[timing] = stats([r[timing] for r in members])
        groups.append(entry)
    # Hard setting: per seed, the mean over the seen types; seeds that miss a type are left out (as in
    # ahl_plugins.evaluation.report); the types are those any row of that data set was run with.
    types: dict[str, set[str]] = defaultdict(set)
    for g in groups:
        if g["setting"] == "hard":
            types[g["data"]].add(g["seen_type"])
    for data, detector in sorted({(g["data"], g["detector"]) for g in groups if g["setting"] == "hard"}):
        members = [g for g in groups if g["data"] == data and g["detector"] == detector and g["setting"] == "hard"]
        if len(types[data]) < 2:
            continue
        entry = {
            "data": data,
            "setting": "hard",
            "n_anomalies": N_ANOMALIES,
            "seen_type": MEAN_TYPE,
            "detector": detector,
            "types": sorted(types[data]),
        }
        for metric in ("auc_roc", "auc_pr"):
            per_seed: dict[int, list[float]] = defaultdict(list)
            for g in members:
                for seed, value in g[metric]["by_seed"].items():
                    per_seed[seed].append(value)
            complete = {s: float(np.mean(v)) for s, v in per_seed.items() if len(v) == len(types[data])}
            entry[metric] = {**stats(list(complete.values())), "by_seed": dict(sorted(complete.items()))}
        for timing in ("fit_seconds", "score_seconds"):
            entry[timing] = stats([g[timing]["mean"] for g in members])
        seeds = {s for g in members for s in g["auc_roc"]["by_seed"]}
        entry["complete"] = len(members) == len(types[data]) and len(entry["auc_roc"]["by_seed"]) == len(seeds)
        groups.append(entry)
    return groups


def load_peer_summary(path: str | Path | None = None) -> dict[str, Any]:
    """The peer rows of a results file, summarised for a results page.

    ``path``: a ``results*.jsonl`` written by this script (default: :func:`default_results`). Returns::

        {
          "results": "<path read>",
          "deepod_version": "0.4.1",
          "epochs": None,            # None: DeepOD's defaults (100); else the --epochs the rows ran with
          "groups": [                # one per (data, setting, seen type, detector)
            {"data": "nsl_kdd",      # run_results' part name (nsl_kdd, pmlb_<name>) or adbench_mvtec_<category>
             "setting": "general" | "hard",
             "n_anomalies": 10,
             "seen_type": "all" | "<type>" | "mean",   # "mean": hard setting, mean over its seen types
             "detector": "5-NN" | "DevNet" | "PReNet" | "DeepSAD" | "RoSAS",
             "auc_roc": {"mean": float, "std": float, "n": int, "by_seed": {seed: float}},
             "auc_pr":  {... the same ...},
             "fit_seconds":   {"mean": float, "std": float, "n": int},
             "score_seconds": {"mean": float, "std": float, "n": int},
             # "mean" groups only: "types" (the seen types averaged) and "complete" (every type ran
             # with every seed that any type ran with)
            }, ...
          ],
          "skipped": [row, ...],     # rows whose split was impossible, or that failed (with "reason")
        }

    Means and sample stds are over seeds, as in ``ahl_plugins.evaluation.report``; a "mean" group's
    per-seed value is the mean over the seen types, kept only for seeds where every type finished.
    A missing file gives empty ``groups``.
    """
    path = Path(path) if path is not None else default_results()
    rows = list(load_rows(path).values())
    epochs = {r.get("epochs") for r in rows if r.get("detector") != KNN_ROW and r.get("status") == "ok"}
    return {
        "results": str(path),
        "deepod_version": DEEPOD_VERSION,
        "epochs": next(iter(epochs)) if len(epochs) == 1 else None,
        "groups": summarise(rows),
        "skipped": [r for r in rows if r.get("status") != "ok"],
    }


# -- the page -----------------------------------------------------------------------------


def _group(groups: Sequence[dict[str, Any]], data: str, setting: str, seen: str | None, detector: str):
    return next(
        (
            g
            for g in groups
            if (g["data"], g["setting"], g["seen_type"], g["detector"]) == (data, setting, seen, detector)
        ),
        None,
    )


def _stat(groups: Sequence[dict[str, Any]], data: str, setting: str, seen: str | None, detector: str, what: str):
    return (_group(groups, data, setting, seen, detector) or {}).get(what)


def _complete(group: dict[str, Any] | None) -> bool:
    """A hard mean over types counts only once every type ran (any other group: once it exists)."""
    return group is not None and group.get("complete", True)


def _seconds(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    value = stat["mean"]
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def headline_seen(groups: Sequence[dict[str, Any]], data: str, setting: str) -> str | None:
    """The seen type of a data set's headline row: "all" (general); hard: "mean", or the one type it has."""
    from ahl_plugins.evaluation.report import MEAN_TYPE

    if setting == "general":
        return "all"
    seen = {g["seen_type"] for g in groups if g["data"] == data and g["setting"] == "hard"}
    return MEAN_TYPE if MEAN_TYPE in seen else (next(iter(seen)) if len(seen) == 1 else None)


def _best(groups, data, setting, seen, detectors) -> str | None:
    values = {d: (_stat(groups, data, setting, seen, d, "auc_roc") or {}).get("mean") for d in detectors}
    values = {d: v for d, v in values.items() if v is not None}
    return max(values, key=values.get) if values else None


def _section(entry: PeerData, groups: Sequence[dict[str, Any]], rows_order: Sequence[str]) -> list[str]:
    from ahl_plugins.evaluation.report import MEAN_TYPE, fmt

    out = [f"## {entry.title}", ""]
    mine = [g for g in groups if g["data"] == entry.name]
    if not mine:
        return out + ["Not run yet (no finished rows for these arguments).", ""]
    if any(g["setting"] == "general" for g in mine):
        out += [
            "**General setting, M = 10**",
            "",
            "| detector | AUC-ROC | AUC-PR | fit s | score s |",
            "|---|---|---|---|---|",
        ]
        for d in rows_order:
            roc = _stat(mine, entry.name, "general", "all", d, "auc_roc")
            if roc is None:
                continue
            out.append(
                f"| {d} | {fmt(roc)} | {fmt(_stat(mine, entry.name, 'general', 'all', d, 'auc_pr'))} | "
                f"{_seconds(_stat(mine, entry.name, 'general', 'all', d, 'fit_seconds'))} | "
                f"{_seconds(_stat(mine, entry.name, 'general', 'all', d, 'score_seconds'))} |"
            )
        out.append("")
    types = sorted({g["seen_type"] for g in mine if g["setting"] == "hard" and g["seen_type"] != MEAN_TYPE})
    if types:
        mean = next((g for g in mine if g["seen_type"] == MEAN_TYPE), None)
        columns = [*types, MEAN_TYPE] if mean else types
        heads = [
            f"seen {t}"
            if t != MEAN_TYPE
            else "mean over types" + ("" if mean["complete"] else " (seeds where every type finished)")
            for t in columns
        ]
        for metric, label in (("auc_roc", "AUC-ROC"), ("auc_pr", "AUC-PR")):
            extra = " | fit s" if metric == "auc_roc" else ""
            out += [
                f"**Hard setting, M = 10, {label}**",
                "",
                "| detector | " + " | ".join(heads) + extra + " |",
                "|---|" + "---|" * (len(columns) + bool(extra)),
            ]
            for d in rows_order:
                cells = [fmt(_stat(mine, entry.name, "hard", t, d, metric)) for t in columns]
                if all(c == "-" for c in cells):
                    continue
                tail = (
                    f" | {_seconds(_stat(mine, entry.name, 'hard', MEAN_TYPE, d, 'fit_seconds') or _stat(mine, entry.name, 'hard', types[0], d, 'fit_seconds'))}"
                    if extra
                    else ""
                )
                out.append(f"| {d} | " + " | ".join(cells) + tail + " |")
            out.append("")
    return out


def _mean_rows(datasets: Sequence[PeerData], groups: Sequence[dict[str, Any]], order: Sequence[str]) -> list[str]:
    """Per kind (tabular, embeddings) and setting, the plain mean of the rows above over the data sets where
    every detector has a complete number."""
    out = []
    for kind in dict.fromkeys(e.kind for e in datasets):
        for setting in ("general", "hard"):
            found = [
                {d: _group(groups, e.name, setting, headline_seen(groups, e.name, setting), d) for d in order}
                for e in datasets
                if e.kind == kind and setting in e.settings
            ]
            values = [
                {d: g["auc_roc"]["mean"] for d, g in row.items()}
                for row in found
                if all(_complete(g) for g in row.values())
            ]
            if len(values) > 1:
                means = {d: float(np.mean([v[d] for v in values])) for d in order}
                best = max(DETECTORS, key=means.get)
                cells = [f"**{means[d]:.3f}**" if d == best else f"{means[d]:.3f}" for d in order]
                out.append(f"| *mean of {len(values)} {kind} sets* | {setting} | " + " | ".join(cells) + " |")
    return out


def _epochs_check(summary: dict[str, Any], other: Path) -> list[str]:
    """Another results file (other epochs) beside this one: mean over the seeds that both ran, per
    (data, setting, seen type, detector)."""
    from ahl_plugins.evaluation.report import fmt, stats

    def label(epochs: Any) -> str:
        return "default (100) epochs" if epochs is None else f"{epochs} epochs"

    here = {k: r for k, r in load_rows(Path(summary["results"])).items() if r.get("status") == "ok"}
    there = {k: r for k, r in load_rows(other).items() if r.get("status") == "ok" and r["detector"] != KNN_ROW}
    paired: dict[tuple, list[tuple]] = defaultdict(list)
    for key in there:
        if key in here:
            paired[key[:4]].append(key)
    if not paired:
        return []
    epochs_there = next(iter(there.values())).get("epochs")
    commands = commands_path(other)
    written = sorted(set(commands.read_text().splitlines())) if commands.is_file() else []
    out = [
        "## What the number of epochs changes",
        "",
        f"The same splits and seeds from `{_rel(other)}`"
        + (f", written by `{'`, `'.join(written)}`" if written else "")
        + "; AUC-ROC, mean ± std over the seeds both ran; fit seconds, mean:",
        "",
        f"| data | setting | seen | detector | seeds | {label(summary['epochs'])} | {label(epochs_there)} | "
        "fit s here | fit s there |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for group in sorted(paired):
        keys = paired[group]
        a = stats([here[k]["auc_roc"] for k in keys])
        b = stats([there[k]["auc_roc"] for k in keys])
        fit_a = stats([here[k]["fit_seconds"] for k in keys])
        fit_b = stats([there[k]["fit_seconds"] for k in keys])
        out.append(
            f"| {group[0]} | {group[1]} | {group[2]} | {group[3]} | {len(keys)} | {fmt(a)} | {fmt(b)} | "
            f"{_seconds(fit_a)} | {_seconds(fit_b)} |"
        )
    return [*out, ""]


def write_page(datasets: Sequence[PeerData], args: argparse.Namespace) -> Path:
    from ahl_plugins.evaluation.compare import machine_description
    from ahl_plugins.evaluation.report import MEAN_TYPE, fmt

    summary = load_peer_summary(results_path(args.runs, args.epochs))
    groups = summary["groups"]
    headline: list[dict[str, Any]] = []  # the At a glance rows, also written as data for other pages
    order = [KNN_ROW, *DETECTORS]
    epochs = (
        "DeepOD's defaults (100 epochs)"
        if args.epochs is None
        else (
            f"**{args.epochs} epochs** (`--epochs`, not DeepOD's default 100: at 100 epochs the whole run takes hours "
            "on this machine; where both ran, *What the number of epochs changes* below shows the difference)"
        )
    )
    out = [
        "# Peers: DeepOD 0.4.1's weakly supervised detectors on our splits",
        "",
        f"Generated by `{_command(args)}` from `{_rel(results_path(args.runs, args.epochs))}`; do not edit by hand.",
        "",
        (
            f"DeepOD {DEEPOD_VERSION}'s tabular DevNet, PReNet, DeepSAD and RoSAS with their default options except "
            f"{epochs}; `device={args.device}`, `random_state` = the split's seed, `verbose=0`. Each runs on exactly "
            "the split that `ahl compare` builds for `docs/results.md` (`ahl_plugins.evaluation.compare.split_data`) "
            "and on the features our DevNet and DRA see (`identity` extractor: z-scored with statistics of the "
            "training rows only). *5-NN* is `ahl_plugins.evaluation.knn` on the same split: label-free, and the same "
            "number as the k-NN row of `docs/results.md`. M = 10 labelled anomalies; mean ± sample std over seeds "
            f"(seeds 0 .. {args.seeds - 1}); hard *mean over types* is per seed the mean over the seen types, "
            "then mean ± std over seeds. *fit s* is DeepOD's `fit` (training, plus its own scoring of the training "
            "rows), wall-clock on one torch thread of a 2-core machine shared with other jobs (compare times within "
            "this page only); *score s* scores the test rows."
        ),
        "",
        "## At a glance",
        "",
        (
            "AUC-ROC, M = 10; hard = mean over seen types (NSL-KDD: seen DoS only); *(partial)*: not every seen type "
            "has finished. **Bold**: the best DeepOD detector of the row. The *mean of N sets* rows average the data "
            "sets above them where every detector has a complete number."
        ),
        "",
        "| data | setting | " + " | ".join(order) + " |",
        "|---|---|" + "---|" * len(order),
    ]
    for entry in datasets:
        for setting in ("general", "hard"):
            seen = headline_seen(groups, entry.name, setting)
            if setting not in entry.settings or seen is None:
                continue
            found = {d: _group(groups, entry.name, setting, seen, d) for d in order}
            if all(g is None for g in found.values()):
                continue
            headline += [headline_row(g, args.epochs) for g in found.values() if g is not None]
            best = _best(groups, entry.name, setting, seen, DETECTORS)
            shown = [
                ("-" if g is None else f"**{fmt(g['auc_roc'])}**" if d == best else fmt(g["auc_roc"]))
                + ("" if g is None or _complete(g) else " (partial)")
                for d, g in found.items()
            ]
            where = setting if seen in ("all", MEAN_TYPE) else f"{setting} (seen {seen})"
            out.append(f"| {entry.name} | {where} | " + " | ".join(shown) + " |")
    out += [*_mean_rows(datasets, groups, order), ""]
    for entry in datasets:
        out += _section(entry, groups, order)
        if entry.name in LAST:
            out += [
                "This data set runs last (by far the largest training set); rows missing above had not finished "
                "when the page was built.",
                "",
            ]
    if args.epochs_check is not None:
        out += _epochs_check(summary, Path(args.epochs_check))
    if summary["skipped"]:
        out += ["## Skipped or failed", ""]
        out += [
            f"- {r['data']} {r['setting']} seen {r['seen_type']} seed {r['seed']} {r['detector']}: "
            f"{r['status']}: {r.get('reason', '')}"
            for r in summary["skipped"]
        ]
        out.append("")
    missing = [e.name for e in datasets if not any(g["data"] == e.name for g in groups)]
    if missing:
        out += [f"Not run yet: {', '.join(missing)}.", ""]
    machine = machine_description()
    machine["torch_threads"] = args.threads
    out += ["## Machine", "", *[f"- {k}: {v}" for k, v in machine.items()], ""]
    write_peer_rows(args.headline, headline)
    return write_markdown(args.page, out, machine=None)  # the footer above lists machine_description()


def _command(args: argparse.Namespace, keep_report_only: bool = False) -> str:
    kept = [
        a for a in (args.argv if args.argv is not None else sys.argv[1:]) if keep_report_only or a != "--report-only"
    ]
    return command("peers", (shlex.quote(a) for a in kept))


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated families: nsl_kdd, pmlb, adbench (default: all)")
    parser.add_argument("--detectors", default=",".join(DETECTORS), help="DeepOD detectors to run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 (each draws its own split)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="override DeepOD's default epochs (stated on the page)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="DeepOD's device (cpu, cuda)")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="where the results file goes")
    parser.add_argument("--page", type=Path, default=DEFAULT_PAGE)
    parser.add_argument(
        "--headline",
        type=Path,
        default=PEER_ROWS,
        help="where the page's At a glance rows go as data (read by benchmarks.run_results)",
    )
    parser.add_argument("--report-only", action="store_true", help="rebuild the page from the results on disk")
    parser.add_argument(
        "--epochs-check",
        type=Path,
        default=None,
        help="a results file run with other --epochs: its rows go beside the same rows on the page",
    )
    args = parser.parse_args(argv)
    args.argv = argv
    args.detectors = [d.strip() for d in args.detectors.split(",") if d.strip()]
    unknown = [d for d in args.detectors if d not in DETECTORS]
    if unknown:
        parser.error(f"unknown detector(s) {unknown}; choose from {list(DETECTORS)}")
    if args.seeds < 1 or (args.epochs is not None and args.epochs < 1) or args.threads < 1:
        parser.error("--seeds, --epochs and --threads must be at least 1")
    families = catalogue(args.data_root)
    chosen = [f.strip() for f in args.only.split(",") if f.strip()] or list(families)
    bad = [f for f in chosen if f not in families]
    if bad:
        parser.error(f"unknown famil{'y' if len(bad) == 1 else 'ies'} {bad}; choose from {list(families)}")
    datasets = ordered(d for f in chosen for d in families[f])
    if not args.report_only:
        run(datasets, args)
    elif not results_path(args.runs, args.epochs).is_file():
        parser.error(
            f"no DeepOD rows at {results_path(args.runs, args.epochs)}: the page and {_rel(args.headline)} "
            "are left as they are (run without --report-only first)"
        )
    write_page(ordered(d for f in families for d in families[f]), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
