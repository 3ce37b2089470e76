"""A compare directory on disk: ``compare.json``, ``results.csv`` and ``cells/``.

Only the driver writes here, one cell at a time: the scores file atomically
first, then the cell's row appended to ``results.csv`` and fsynced. A row
therefore means the cell is complete, and a restarted compare that finds it
skips the cell.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ahl_plugins.atomic import atomic_write_bytes, atomic_write_text
from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.evaluation.grid import Cell

if TYPE_CHECKING:
    from ahl_plugins.evaluation.compare.config import CompareConfig
    from ahl_plugins.evaluation.compare.runner import CellRun
    from ahl_plugins.evaluation.compare.splits import SplitData

COMPARE_FILE = "compare.json"
RESULTS_FILE = "results.csv"
CELLS_DIR = "cells"
LOCK_FILE = ".compare.lock"
FORMAT = "ahl-plugins/compare"
FORMAT_VERSION = 1

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
    "pixel_auroc",
    "pixel_aupro",
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
    "pixel_by_type",
    "train_seed",
    "ahl_guard",
)
INT_FIELDS = (
    "n_anomalies",
    "seed",
    "train_seed",
    "n_train_normals",
    "n_train_anomalies",
    "n_test_normals",
    "n_test_anomalies",
)
FLOAT_FIELDS = ("auc_roc", "auc_pr", "pixel_auroc", "pixel_aupro", "fit_seconds", "train_seconds", "score_seconds")
OK, SKIPPED, FAILED = "ok", "skipped", "failed"


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
            atomic_write_text(self.path, text)
        reader = csv.DictReader(io.StringIO(text))
        columns = tuple(reader.fieldnames or ())
        if columns and columns != RESULT_FIELDS:
            if not set(columns) < set(RESULT_FIELDS):
                raise DataError(
                    f"{self.path} has columns {list(columns)}, not those of this ahl-plugins version; "
                    "use a fresh --output directory"
                )
            # Written before columns were added (e.g. the pixel metrics): every cell is still valid, the new
            # columns are empty for it. Rewrite once with the current header so appended rows line up.
            rows = {raw["cell_id"]: parse_row(raw) for raw in reader}
            self.rewrite(rows.values())
            return rows
        return {raw["cell_id"]: parse_row(raw) for raw in reader}

    def append(self, row: Mapping[str, Any]) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(_csv_text([row], header=new))
            handle.flush()
            os.fsync(handle.fileno())

    def rewrite(self, rows: Iterable[Mapping[str, Any]]) -> None:
        atomic_write_text(self.path, _csv_text(rows, header=True))


def _csv_text(rows: Iterable[Mapping[str, Any]], *, header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_FIELDS, lineterminator="\n")
    if header:
        writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in RESULT_FIELDS})
    return buffer.getvalue()


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


def guard_cell(info: Mapping[str, Any] | None) -> str | None:
    """The ``ahl_guard`` column: which model the AHL guard let score, with its held-out evidence.

    ``ahl`` / ``base`` with both held-out AUCs, ``off`` when disabled, ``skipped`` when too few samples; empty
    for fits without AHL.
    """
    record = (info or {}).get("guard")
    if not isinstance(record, Mapping):
        return None
    if not record.get("enabled"):
        return "off"
    evidence = record.get("evidence")
    if not isinstance(evidence, Mapping):
        return "skipped"
    return f"{record['chosen']} (held-out AUC ahl {evidence['ahl']:.3f}, base {evidence['base']:.3f})"


def result_row(cell: Cell, dataset: str, status: str, **values: Any) -> dict[str, Any]:
    """A ``results.csv`` row for ``cell``; columns not given are empty."""
    row = dict.fromkeys(RESULT_FIELDS)
    row.update(
        cell_id=cell.id,
        dataset=dataset,
        model=cell.model,
        variant=cell.variant,
        setting=cell.split.setting,
        n_anomalies=cell.split.n_anomalies,
        seen_type=cell.split.seen_type,
        seed=cell.split.seed,
        train_seed=None if cell.is_knn else cell.train_seed,
        status=status,
    )
    row.update(values)
    return row


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
    if any(p.name not in (CELLS_DIR, LOCK_FILE) for p in output.iterdir()):
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
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            None,
        )
        if model_name:
            info["cpu"] = model_name
    except OSError:
        pass
    return info


# -- cells/ -----------------------------------------------------------------------------


def write_cell(output: Path, cell: Cell, data: SplitData, run: CellRun, metrics: dict[str, float]) -> None:
    """``cells/<id>.npz`` (scores, labels, types) and ``cells/<id>.json`` (metrics, times, history)."""
    arrays = {
        "scores": np.asarray(run.scores, dtype=np.float64),
        "labels": np.asarray(data.test_labels, dtype=np.int64),
        "types": np.asarray(data.test_types, dtype=str),
        "test_indices": np.asarray(data.split.test_indices, dtype=np.int64),
    }
    if data.test_subtypes is not None:
        arrays["subtypes"] = np.asarray(data.test_subtypes, dtype=str)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # the stub lets **arrays fill allow_pickle: bool
    atomic_write_bytes(output / CELLS_DIR / f"{cell.id}.npz", buffer.getvalue())
    document = {
        "cell_id": cell.id,
        "model": cell.model,
        "variant": cell.variant,
        "split": data.split.summary(),
        "metrics": metrics,
        "pixel_by_type": getattr(run, "pixel", None),
        "seconds": {"fit": run.fit_seconds, "train": run.train_seconds, "score": run.score_seconds},
        "fit_info": _history_json(run.info),
        "history": _history_json(run.history),
    }
    atomic_write_text(output / CELLS_DIR / f"{cell.id}.json", json.dumps(document) + "\n")


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
