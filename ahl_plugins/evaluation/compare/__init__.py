"""The compare grid: base vs base+AHL (and the k-NN reference) on identical splits.

One idea per module: :mod:`.config` (what a compare runs), :mod:`.splits`
(the data each split hands its cells), :mod:`.runner` (fitting one cell),
:mod:`.executors` and :mod:`.ray_executor` (where cells run), :mod:`.storage`
and :mod:`.lock` (the output directory and its single writer), and
:mod:`.driver` (the loop that ties them together). The names below are the
public API; import them from here.
"""

from __future__ import annotations

from ahl_plugins.evaluation.compare.config import CompareConfig, parse_config
from ahl_plugins.evaluation.compare.driver import KILL_AFTER_ENV, CompareResult, run_compare
from ahl_plugins.evaluation.compare.executors import CellOutcome
from ahl_plugins.evaluation.compare.lock import OutputLock
from ahl_plugins.evaluation.compare.runner import CellRun, DetectorRunner, Runner, extractor_name, knn_rows
from ahl_plugins.evaluation.compare.splits import SplitData, resolve_hard_types, split_data
from ahl_plugins.evaluation.compare.storage import (
    CELLS_DIR,
    COMPARE_FILE,
    FAILED,
    LOCK_FILE,
    OK,
    RESULT_FIELDS,
    RESULTS_FILE,
    SKIPPED,
    ResultsFile,
    load_results,
    machine_description,
    prepare_output,
)

__all__ = [
    "CELLS_DIR",
    "COMPARE_FILE",
    "FAILED",
    "KILL_AFTER_ENV",
    "LOCK_FILE",
    "OK",
    "RESULTS_FILE",
    "RESULT_FIELDS",
    "SKIPPED",
    "CellOutcome",
    "CellRun",
    "CompareConfig",
    "CompareResult",
    "DetectorRunner",
    "OutputLock",
    "ResultsFile",
    "Runner",
    "SplitData",
    "extractor_name",
    "knn_rows",
    "load_results",
    "machine_description",
    "parse_config",
    "prepare_output",
    "resolve_hard_types",
    "run_compare",
    "split_data",
]
