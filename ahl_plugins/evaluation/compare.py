"""Run the compare grid: base vs base+AHL (and the k-NN reference) on identical splits.

Each split is built once; every cell on it sees the same training and test
samples, the same seed and the same cached features, so AHL's gain over its
base model is a paired difference. Every finished cell is on disk the moment
it finishes (its scores in ``cells/<id>.npz``, its row appended to
``results.csv`` and fsynced), so a compare that is interrupted and started
again with the same arguments skips what is done and loses nothing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ahl_plugins.atomic import atomic_write_bytes, atomic_write_text
from ahl_plugins.errors import AHLError, DataError, InvalidOptionsError
from ahl_plugins.evaluation.grid import (
    ALL_TYPES,
    BASE,
    KNN,
    SETTINGS,
    Cell,
    SplitKey,
    build_grid,
)

COMPARE_FILE = "compare.json"
RESULTS_FILE = "results.csv"
CELLS_DIR = "cells"
FORMAT = "ahl-plugins/compare"
FORMAT_VERSION = 1
#: Test hook: kill this process (SIGKILL, as an impatient user would) after N cells were written.
KILL_AFTER_ENV = "AHL_COMPARE_KILL_AFTER"
#: Label prefix of the k-NN rows on a fine-tuned model's features (``knn[fine-tuned dra]``).
FINETUNED_KNN = f"{KNN}[fine-tuned "

RESULT_FIELDS = (
    "cell_id",
    "dataset",
    "model",
    "variant",
    "setting",
    "n_anomalies",
    "seen_type",
    "seed",
    "status",
    "auc_roc",
    "auc_pr",
    "fit_seconds",
    "train_seconds",
    "score_seconds",
    "n_train_normals",
    "n_train_anomalies",
    "n_test_normals",
    "n_test_anomalies",
    "unseen_types",
    "extractor",
    "reason",
)
INT_FIELDS = ("n_anomalies", "seed", "n_train_normals", "n_train_anomalies", "n_test_normals", "n_test_anomalies")
FLOAT_FIELDS = ("auc_roc", "auc_pr", "fit_seconds", "train_seconds", "score_seconds")
OK, SKIPPED, FAILED = "ok", "skipped", "failed"


class CompareConfig(BaseModel):
    """What a compare runs. Everything except ``device``, ``cache_dir``,
    ``progress`` and ``threads`` must match for a restarted compare to resume
    a directory: those change where and how fast it runs, not what it computes."""

    model_config = ConfigDict(extra="forbid")

    data: str = Field(..., description="what ahl_plugins.data.load.load_dataset takes: folder, .npz, .csv/.tsv, elpv, digits")
    models: list[str] = Field(default_factory=lambda: ["devnet", "dra"], min_length=1)
    settings: list[str] = Field(default_factory=lambda: ["general"], min_length=1)
    n_anomalies: list[int] = Field(default_factory=lambda: [10], min_length=1)
    anomaly_types: list[str] | None = Field(None, description="seen types for the hard setting; None = every type")
    seeds: int = Field(3, ge=1, description="seeds 0 .. seeds-1; each seed draws its own split")
    ablations: bool = False
    extractor: str | None = None
    extractor_options: dict[str, Any] = Field(default_factory=dict, description="options of the feature extractor")
    epochs: int | None = Field(None, ge=1, description="override the trainers' epochs (for a quick pass)")
    finetune_backbone: bool = Field(
        False, description="base = fine-tuned end to end; AHL on its frozen features; k-NN also on those features"
    )
    k: int = Field(5, ge=1, description="neighbours of the k-NN reference")
    options: dict[str, Any] = Field(default_factory=dict, description="detector options for every model variant")
    ahl_options: dict[str, Any] = Field(default_factory=dict, description="extra options for the AHL variants only")
    dataset_options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of load_dataset")
    device: str = "cpu"
    cache_dir: str | None = None
    progress: bool = True
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads while the grid runs (None: torch's default); 1 is much faster for small heads"
    )

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if s not in SETTINGS]
        if bad:
            raise ValueError(f"unknown setting(s) {bad}; use {list(SETTINGS)}")
        return list(dict.fromkeys(value))

    @field_validator("n_anomalies")
    @classmethod
    def _n_anomalies(cls, value: list[int]) -> list[int]:
        if any(n < 1 for n in value):
            raise ValueError(f"n_anomalies must be >= 1, got {value}")
        return list(dict.fromkeys(value))

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        value = [m.strip() for m in value if m.strip()]
        if not value:
            raise ValueError("at least one model is needed")
        if KNN in value:
            raise ValueError("'knn' is the reference row every compare adds; it is not a model to pass")
        return list(dict.fromkeys(value))

    def identity(self) -> dict[str, Any]:
        """The arguments that decide the results (what a resume must match)."""
        return self.model_dump(mode="json", exclude={"device", "cache_dir", "progress", "threads"})

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds))


@dataclass(frozen=True)
class SplitData:
    """The inputs and labels one split hands to every cell on it."""

    key: SplitKey
    split: Any  # ahl_plugins.data.protocols.Split
    dataset_name: str
    train_inputs: list[Path] | np.ndarray
    train_labels: np.ndarray
    train_types: np.ndarray
    test_inputs: list[Path] | np.ndarray
    test_labels: np.ndarray
    test_types: np.ndarray
    test_subtypes: np.ndarray | None = None


@dataclass
class CellRun:
    """What running one cell produced."""

    scores: np.ndarray
    fit_seconds: float
    score_seconds: float
    train_seconds: float | None = None
    history: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    extractor: str = ""


Runner = Callable[[Cell, SplitData], CellRun]


@dataclass
class CompareResult:
    output: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    computed: list[str]
    reused: list[str]
    skipped: list[str]
    failed: list[str]
    plots: list[Path]
    table: str


# -- results.csv ------------------------------------------------------------------------


class ResultsFile:
    """``results.csv``: one row per finished cell, appended and fsynced as each finishes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, dict[str, Any]]:
        """Rows by cell id (the last row wins); a half-written last line is dropped."""
        if not self.path.is_file():
            return {}
        text = self.path.read_text()
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]  # killed mid-write: that cell was not finished
            self._rewrite_text(text)
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is not None and tuple(reader.fieldnames) != RESULT_FIELDS:
            raise DataError(
                f"{self.path} has columns {reader.fieldnames}, not those of this ahl-plugins version; "
                "use a fresh --output directory"
            )
        rows: dict[str, dict[str, Any]] = {}
        for raw in reader:
            rows[raw["cell_id"]] = parse_row(raw)
        return rows

    def append(self, row: Mapping[str, Any]) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({k: _csv_value(row.get(k)) for k in RESULT_FIELDS})
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())

    def rewrite(self, rows: Iterable[Mapping[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in RESULT_FIELDS})
        self._rewrite_text(buffer.getvalue())

    def _rewrite_text(self, text: str) -> None:
        atomic_write_text(self.path, text)


def parse_row(raw: Mapping[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = dict(raw)
    for key in INT_FIELDS:
        row[key] = int(raw[key]) if raw.get(key) not in (None, "") else None
    for key in FLOAT_FIELDS:
        row[key] = float(raw[key]) if raw.get(key) not in (None, "") else None
    return row


def load_results(output: str | Path) -> list[dict[str, Any]]:
    """The rows of a compare directory's ``results.csv`` (one per cell, last wins)."""
    return list(ResultsFile(Path(output) / RESULTS_FILE).load().values())


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def _atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


# -- compare.json -----------------------------------------------------------------------


def prepare_output(output: Path, config: CompareConfig) -> None:
    """Create ``output`` or check it belongs to a compare with the same arguments."""
    output.mkdir(parents=True, exist_ok=True)
    (output / CELLS_DIR).mkdir(exist_ok=True)
    path = output / COMPARE_FILE
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidOptionsError(f"{path} is not valid JSON ({exc}); use a fresh --output directory") from None
        if stored.get("format") != FORMAT:
            raise InvalidOptionsError(f"{path} was not written by ahl compare; use a fresh --output directory")
        before, now = stored.get("arguments", {}), config.identity()
        differ = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if differ:
            lines = "; ".join(f"{k}: was {before.get(k)!r}, now {now.get(k)!r}" for k in differ)
            raise InvalidOptionsError(
                f"{output} holds a compare run with different arguments ({lines}). Resume it with the same "
                "arguments, or choose another --output directory"
            )
        return
    if any(p.name != CELLS_DIR for p in output.iterdir()):
        raise InvalidOptionsError(
            f"{output} is not empty and holds no {COMPARE_FILE}: refusing to write a compare into it; "
            "choose a new or empty --output directory"
        )
    from ahl_plugins import __version__

    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "ahl_plugins_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "arguments": config.identity(),
        "machine": machine_description(),
    }
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")


def machine_description() -> dict[str, Any]:
    """Where the numbers were measured (times only make sense with it)."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001, S110 - the description is best effort; torch is a dependency
        pass
    try:
        model_name = next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
            None,
        )
        if model_name:
            info["cpu"] = model_name
    except OSError:
        pass
    return info


# -- splits -----------------------------------------------------------------------------


def resolve_hard_types(dataset: Any, requested: Sequence[str] | None) -> list[str]:
    """The seen types of the hard setting; an unknown name is a typo, reported up front."""
    present = list(dataset.anomaly_types)
    if requested is None or list(requested) == [ALL_TYPES]:
        return present
    missing = [t for t in requested if t not in present]
    if missing:
        raise DataError(f"anomaly type(s) {missing} not in dataset {dataset.name!r}; its types are {present}")
    return list(dict.fromkeys(requested))


def split_data(dataset: Any, key: SplitKey) -> SplitData:
    """Build one split (raises ``DataError`` when the split is impossible)."""
    from ahl_plugins.data.protocols import make_split

    split = make_split(
        dataset,
        setting=key.setting,  # type: ignore[arg-type]
        n_anomalies=key.n_anomalies,
        anomaly_type=None if key.setting == "general" else key.seen_type,
        seed=key.seed,
    )
    if getattr(dataset, "encoder", None) is not None and getattr(dataset, "raw_table", None) is not None and not dataset.has_partition:
        from ahl_plugins.data.tabular import refit_encoding

        dataset = refit_encoding(dataset, split.train_indices)  # vocabulary from this split's training rows only
    train_types = np.where(split.train_labels == 1, dataset.types[split.train_indices], "normal")
    return SplitData(
        key=key,
        split=split,
        dataset_name=dataset.name,
        train_inputs=dataset.select_inputs(split.train_indices),
        train_labels=split.train_labels,
        train_types=train_types,
        test_inputs=dataset.select_inputs(split.test_indices),
        test_labels=split.test_labels,
        test_types=split.test_types,
        test_subtypes=None if dataset.subtypes is None else dataset.subtypes[split.test_indices],
    )


# -- the default runner -----------------------------------------------------------------


class DetectorRunner:
    """Fits and scores a cell with :class:`OSADDetector` (or the k-NN reference)."""

    def __init__(self, config: CompareConfig) -> None:
        self.config = config

    def detector_options(self, cell: Cell) -> dict[str, Any]:
        options = dict(self.config.options)
        if self.config.epochs is not None:
            options["epochs"] = self.config.epochs
        kwargs = cell.detector_kwargs()
        if kwargs["ahl"]:
            options.update(self.config.ahl_options)
        options.update({k: v for k, v in kwargs.items() if k != "ahl"})
        if self.config.finetune_backbone:
            from ahl_plugins.training.finetune import finetune_options_like_base

            options.update(finetune_options_like_base(self.config.options, self.config.epochs, ahl=kwargs["ahl"]))
        return options

    def make_detector(self, cell: Cell, seed: int):
        from ahl_plugins.detector import OSADDetector

        return OSADDetector(
            cell.model,
            ahl=cell.detector_kwargs()["ahl"],
            extractor=self.config.extractor,
            seed=seed,
            device=self.config.device,
            cache_dir=self.config.cache_dir,
            extractor_options=dict(self.config.extractor_options),
            **self.detector_options(cell),
        )

    def check(self, cells: Iterable[Cell]) -> None:
        """Build one detector per model variant before anything runs: a misspelt option or
        model fails now, with the detector's message, not once per cell."""
        seen = set()
        for cell in cells:
            if cell.is_knn or (cell.model, cell.variant) in seen:
                continue
            seen.add((cell.model, cell.variant))
            self.make_detector(cell, cell.split.seed)

    def __call__(self, cell: Cell, data: SplitData) -> CellRun:
        if cell.is_knn:
            return self._knn(cell, data)
        detector = self.make_detector(cell, data.key.seed)
        started = time.perf_counter()
        detector.fit(data.train_inputs, data.train_labels, anomaly_types=list(data.train_types))
        fitted = time.perf_counter()
        scores = detector.decision_function(data.test_inputs)
        scored = time.perf_counter()
        seconds = detector.fit_info_.get("seconds", {})
        return CellRun(
            scores=np.asarray(scores, dtype=np.float64),
            fit_seconds=fitted - started,
            score_seconds=scored - fitted,
            train_seconds=seconds.get("train"),
            history=detector.history_,
            info=dict(detector.fit_info_),
            extractor=extractor_name(cell.model, self.config.extractor, detector.fit_info_.get("input_kind", "vector")),
        )

    def _knn(self, cell: Cell, data: SplitData) -> CellRun:
        from ahl_plugins.devices import resolve_device
        from ahl_plugins.evaluation.knn import knn_reference
        from ahl_plugins.features.cache import FeatureCache, resolve_cache_dir

        timings: dict[str, float] = {}
        extractor = self.config.extractor
        if cell.model.startswith(FINETUNED_KNN):
            # The base model's fine-tuned network (read back from the fine-tuning cache when the base cell ran).
            base = self.make_detector(Cell(cell.split, cell.source_model, BASE), data.key.seed)
            extractor = base.fit(data.train_inputs, data.train_labels, anomaly_types=list(data.train_types)).extractor_
        scores = knn_reference(
            data.train_inputs,
            data.train_labels,
            data.test_inputs,
            model=cell.source_model or self.config.models[0],
            extractor=extractor,
            extractor_options=self.config.extractor_options,
            k=self.config.k,
            cache=FeatureCache(resolve_cache_dir(self.config.cache_dir)),
            device=resolve_device(self.config.device),
            timings=timings,
        )
        return CellRun(
            scores=scores,
            fit_seconds=timings.get("fit", 0.0),
            score_seconds=timings.get("score", 0.0),
            info={"k": self.config.k, "method": "kth"},
            extractor=extractor_name(cell.source_model or self.config.models[0], self.config.extractor, data_kind(data)),
        )


def data_kind(data: SplitData) -> str:
    return "vector" if isinstance(data.train_inputs, np.ndarray) else "image"


def extractor_name(model: str, extractor: str | None, kind: str) -> str:
    from ahl_plugins.plugins import get_manager

    spec = get_manager().model(model)
    return extractor or (spec.image_extractor if kind == "image" else spec.vector_extractor)


def knn_rows(models: Sequence[str], extractor: str | None, kind: str) -> list[tuple[str, str]]:
    """One k-NN row per distinct extractor among the models: ``(label, model)``."""
    groups: dict[str, str] = {}
    for model in models:
        groups.setdefault(extractor_name(model, extractor, kind), model)
    if len(groups) == 1:
        return [(KNN, next(iter(groups.values())))]
    return [(f"{KNN}[{name}]", model) for name, model in groups.items()]


# -- the grid loop ----------------------------------------------------------------------


def _history_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _history_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_history_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return _history_json(value.tolist())
    if isinstance(value, np.generic):
        return _history_json(value.item())
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "tolist"):  # torch tensors
        return _history_json(value.tolist())
    return str(value)


def _row(cell: Cell, data_name: str, status: str, **values: Any) -> dict[str, Any]:
    row = {k: None for k in RESULT_FIELDS}
    row.update(
        cell_id=cell.id,
        dataset=data_name,
        model=cell.model,
        variant=cell.variant,
        setting=cell.split.setting,
        n_anomalies=cell.split.n_anomalies,
        seen_type=cell.split.seen_type,
        seed=cell.split.seed,
        status=status,
    )
    row.update(values)
    return row


def _write_cell(output: Path, cell: Cell, data: SplitData, run: CellRun, metrics: dict[str, float]) -> None:
    arrays = {
        "scores": np.asarray(run.scores, dtype=np.float64),
        "labels": np.asarray(data.test_labels, dtype=np.int64),
        "types": np.asarray(data.test_types, dtype=str),
        "test_indices": np.asarray(data.split.test_indices, dtype=np.int64),
    }
    if data.test_subtypes is not None:
        arrays["subtypes"] = np.asarray(data.test_subtypes, dtype=str)
    _atomic_npz(output / CELLS_DIR / f"{cell.id}.npz", **arrays)
    document = {
        "cell_id": cell.id,
        "model": cell.model,
        "variant": cell.variant,
        "split": data.split.summary(),
        "metrics": metrics,
        "seconds": {"fit": run.fit_seconds, "train": run.train_seconds, "score": run.score_seconds},
        "fit_info": _history_json(run.info),
        "history": _history_json(run.history),
    }
    atomic_write_text(output / CELLS_DIR / f"{cell.id}.json", json.dumps(document) + "\n")


def run_compare(
    config: CompareConfig,
    output: str | Path,
    *,
    runner: Runner | None = None,
    dataset: Any = None,
    echo: Callable[[str], None] | None = None,
    plots: bool = True,
) -> CompareResult:
    """Run (or resume) the grid into ``output``; write the summary and plots; return the rows.

    ``runner`` replaces the detector fits (tests inject a counting or fake
    one); ``dataset`` skips loading ``config.data`` (an already loaded
    :class:`OSADDataset`).
    """
    if config.threads is None:
        return _run_compare(config, output, runner=runner, dataset=dataset, echo=echo, plots=plots)
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run_compare(config, output, runner=runner, dataset=dataset, echo=echo, plots=plots)
    finally:
        torch.set_num_threads(before)


def _run_compare(
    config: CompareConfig,
    output: str | Path,
    *,
    runner: Runner | None,
    dataset: Any,
    echo: Callable[[str], None] | None,
    plots: bool,
) -> CompareResult:
    from ahl_plugins.evaluation.metrics import evaluate
    from ahl_plugins.evaluation.report import format_table, write_summary

    output = Path(output)
    say = echo or (lambda text: None)
    prepare_output(output, config)
    results = ResultsFile(output / RESULTS_FILE)
    done = results.load()
    failed_before = [cid for cid, row in done.items() if row["status"] == FAILED]
    if failed_before:  # a failure may be transient (memory, an interrupted device): try those cells again
        done = {cid: row for cid, row in done.items() if row["status"] != FAILED}
        results.rewrite(done.values())
    if dataset is None:
        from ahl_plugins.data.load import load_dataset

        dataset = load_dataset(config.data, **config.dataset_options)
    hard_types = resolve_hard_types(dataset, config.anomaly_types) if "hard" in config.settings else []
    if config.anomaly_types is not None and "hard" not in config.settings:
        say("note: --anomaly-type applies to the hard setting only; it is ignored here")
    runner = runner or DetectorRunner(config)
    rows_knn = knn_rows(config.models, config.extractor, dataset.input_kind)
    if config.finetune_backbone:
        rows_knn += [(f"{FINETUNED_KNN}{model}]", model) for model in config.models]
    grid = build_grid(
        config.models, config.settings, config.n_anomalies, hard_types, config.seed_list, config.ablations, rows_knn
    )
    total = sum(len(cells) for _, cells in grid)
    check = getattr(runner, "check", None)
    if callable(check):
        check([cell for _, cells in grid for cell in cells])
    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
    computed: list[str] = []
    skipped: list[str] = []
    failed: list[str] = []
    reused = [cell.id for _, cells in grid for cell in cells if cell.id in done]
    if reused:
        say(f"resuming {output}: {len(reused)} of {total} cells already finished, {total - len(reused)} to run")

    bar = _progress(total, config.progress and echo is not None)
    bar.update(len(reused))
    try:
        for key, cells in grid:
            todo = [cell for cell in cells if cell.id not in done]
            if not todo:
                continue
            bar.set_description(key.id)
            try:
                data = split_data(dataset, key)
            except (DataError, InvalidOptionsError) as exc:
                reason = f"impossible split: {exc}"
                for cell in todo:
                    row = _row(cell, dataset.name, SKIPPED, reason=reason)
                    results.append(row)
                    done[cell.id] = row
                    skipped.append(cell.id)
                    bar.update(1)
                _write(bar, say, f"skipped {len(todo)} cell(s) of split {key.id}: {exc}")
                continue
            summary = data.split.summary()
            counts = {
                "n_train_normals": int((data.train_labels == 0).sum()),
                "n_train_anomalies": int((data.train_labels == 1).sum()),
                "n_test_normals": int((data.test_labels == 0).sum()),
                "n_test_anomalies": int((data.test_labels == 1).sum()),
                "unseen_types": ";".join(summary.get("unseen_types", [])),
            }
            for cell in todo:
                bar.set_postfix_str(f"{cell.model}/{cell.variant}")
                try:
                    run = runner(cell, data)
                    metrics = evaluate(data.test_labels, run.scores)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - one broken cell must not cost the rest of the grid
                    reason = f"{type(exc).__name__}: {exc}"
                    row = _row(cell, dataset.name, FAILED, reason=reason, **counts)
                    results.append(row)
                    done[cell.id] = row
                    failed.append(cell.id)
                    _write(bar, say, f"FAILED {cell.id}: {reason}")
                    if not isinstance(exc, AHLError):
                        import traceback

                        _write(bar, say, traceback.format_exc())
                    bar.update(1)
                    continue
                _write_cell(output, cell, data, run, metrics)
                row = _row(
                    cell,
                    dataset.name,
                    OK,
                    auc_roc=metrics["auc_roc"],
                    auc_pr=metrics["auc_pr"],
                    fit_seconds=float(run.fit_seconds),
                    train_seconds=None if run.train_seconds is None else float(run.train_seconds),
                    score_seconds=float(run.score_seconds),
                    extractor=run.extractor,
                    **counts,
                )
                results.append(row)
                done[cell.id] = row
                computed.append(cell.id)
                bar.update(1)
                if kill_after and len(computed) >= kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
    finally:
        bar.close()

    order = {cell.id: i for i, cell in enumerate(c for _, cells in grid for c in cells)}
    rows = sorted((row for cid, row in done.items() if cid in order), key=lambda r: order[r["cell_id"]])
    stale = [cid for cid in done if cid not in order]
    if stale:  # cannot happen with identical arguments; kept visible rather than silently dropped
        say(f"note: {len(stale)} rows in {RESULTS_FILE} belong to no cell of this grid and are left out of the summary")
    summary = write_summary(rows, output, config=config, dataset=dataset.name)
    written: list[Path] = []
    if plots:
        from ahl_plugins.evaluation.plots import write_plots

        try:
            written = write_plots(output, rows, summary)
        except Exception as exc:  # noqa: BLE001 - a plotting problem must not hide the numbers
            say(f"warning: plots not written: {type(exc).__name__}: {exc}")
    table = format_table(summary)
    return CompareResult(output, rows, summary, computed, reused, skipped, failed, written, table)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="cell", disable=not enabled, dynamic_ncols=True, leave=True)


def _write(bar: Any, say: Callable[[str], None], text: str) -> None:
    if getattr(bar, "disable", True):
        say(text)
    else:
        bar.write(text)


def parse_config(**values: Any) -> CompareConfig:
    """``CompareConfig(**values)`` with pydantic's errors turned into a readable :class:`InvalidOptionsError`."""
    try:
        return CompareConfig(**values)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise InvalidOptionsError("invalid compare arguments: " + "; ".join(lines)) from None
