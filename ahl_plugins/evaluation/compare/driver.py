"""The compare driver: runs (or resumes) the grid on an executor and is its only writer.

Each split is built once; every cell on it sees the same training and test
samples, the same seed and the same cached features, so AHL's gain over its
base model is a paired difference. Cells run wherever the executor puts them
(this process, local workers, Ray tasks), but only the driver writes: each
finished cell is on disk the moment it comes back (its scores in
``cells/<id>.npz``, its row appended to ``results.csv`` and fsynced), so a
compare that is interrupted and started again with the same arguments skips
what is done and loses nothing. At the end it writes the summary (with every
gain's interval and verdict), the plots and ``index.html``. A lock file keeps a second compare out of
the same directory while this one runs.
"""

from __future__ import annotations

import json
import os
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ahl_plugins.drift import DriftReport
from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.evaluation.compare.config import CompareConfig
from ahl_plugins.evaluation.compare.executors import (
    CellOutcome,
    Executor,
    LocalPool,
    SerialExecutor,
    default_threads,
    set_threads,
)
from ahl_plugins.evaluation.compare.lock import OutputLock
from ahl_plugins.evaluation.compare.runner import (
    DetectorRunner,
    Runner,
    extractor_name,
    finetuned_base,
    finetuned_knn_rows,
    knn_rows,
)
from ahl_plugins.evaluation.compare.splits import SplitData, resolve_hard_types, split_data
from ahl_plugins.evaluation.compare.storage import (
    FAILED,
    LOCK_FILE,
    OK,
    RESULTS_FILE,
    SKIPPED,
    ResultsFile,
    guard_cell,
    prepare_output,
    result_row,
    write_cell,
)
from ahl_plugins.evaluation.grid import Cell, SplitKey, build_grid

#: Test hook: kill this process (SIGKILL, as an impatient user would) after N cells were written.
KILL_AFTER_ENV = "AHL_COMPARE_KILL_AFTER"


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
    one; with ``jobs > 1`` or Ray it must be picklable); ``dataset`` skips
    loading ``config.data`` (an already loaded :class:`OSADDataset`).
    Raises :class:`OutputLockedError` while another compare writes ``output``.
    """
    output = Path(output)
    import torch

    before = torch.get_num_threads()
    set_threads(config.threads)
    try:
        with OutputLock(output / LOCK_FILE):
            return _run_compare(config, output, runner=runner, dataset=dataset, echo=echo, plots=plots)
    finally:
        torch.set_num_threads(before)


class _Grid:
    """The cells still to run, in grid order, handed out as soon as they may start.

    With image data, the pseudo anomalies of a split go through the backbone
    inside the first fit that needs them and are cached; the other cells of
    that split and extractor wait for it, so no two workers extract them twice.
    """

    def __init__(self, splits: list[tuple[SplitKey, list[Cell]]], dataset: Any, config: CompareConfig) -> None:
        self.splits = deque(splits)
        self.dataset = dataset
        self.config = config
        self.ready: deque[tuple[Cell, SplitData]] = deque()
        self.waiting: dict[str, list[tuple[Cell, SplitData]]] = {}  # owner cell id -> cells after it
        self.skipped: list[tuple[SplitKey, list[Cell], str]] = []

    def __bool__(self) -> bool:
        return bool(self.splits or self.ready or self.waiting)

    def next_ready(self) -> tuple[Cell, SplitData] | None:
        while not self.ready and self.splits:
            self._open(*self.splits.popleft())
        return self.ready.popleft() if self.ready else None

    def _open(self, key: SplitKey, cells: list[Cell]) -> None:
        try:
            data = split_data(self.dataset, key)
        except (DataError, InvalidOptionsError) as exc:
            self.skipped.append((key, cells, str(exc)))
            return
        owners: dict[str, str] = {}
        after_base: list[tuple[str, Cell]] = []
        to_run = {cell.id for cell in cells}
        for cell in cells:
            base = finetuned_base(cell)
            if base is not None and base.id in to_run:
                # k-NN on a fine-tuned network reads it back from the base cell's fine-tuning (never trains it twice).
                after_base.append((base.id, cell))
                continue
            if cell.is_knn or self.dataset.input_kind != "image":
                self.ready.append((cell, data))
                continue
            group = extractor_name(cell.model, self.config.extractor, "image")
            if group in owners:
                self.waiting[owners[group]].append((cell, data))
            else:
                owners[group] = cell.id
                self.waiting[cell.id] = []
                self.ready.append((cell, data))
        for base_id, cell in after_base:
            self.waiting.setdefault(base_id, []).append((cell, data))

    def finished(self, cell_id: str) -> None:
        self.ready.extendleft(reversed(self.waiting.pop(cell_id, [])))


def _run_compare(
    config: CompareConfig,
    output: Path,
    *,
    runner: Runner | None,
    dataset: Any,
    echo: Callable[[str], None] | None,
    plots: bool,
) -> CompareResult:
    from ahl_plugins.evaluation.metrics import evaluate
    from ahl_plugins.evaluation.report import format_table, write_summary

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
        for line in dataset.skipped:  # unreadable or ignored files: said once, up front
            say(f"skipped {line}")
    hard_types = resolve_hard_types(dataset, config.anomaly_types) if "hard" in config.settings else []
    if config.anomaly_types is not None and "hard" not in config.settings:
        say("note: --anomaly-type applies to the hard setting only; it is ignored here")
    runner = runner or DetectorRunner(config)
    rows_knn: list[tuple[str, ...]] = list(
        knn_rows(config.models, config.extractor, dataset.input_kind, config.reference_forms(dataset.input_kind))
    )
    if config.finetune_backbone:
        rows_knn += finetuned_knn_rows(config.models)
    grid = build_grid(
        config.models,
        config.settings,
        config.n_anomalies,
        hard_types,
        config.seed_list,
        config.ablations,
        rows_knn,
        config.train_seeds,
    )
    total = sum(len(cells) for _, cells in grid)
    check = getattr(runner, "check", None)
    if callable(check):
        check([cell for _, cells in grid for cell in cells])
    reused = [cell.id for _, cells in grid for cell in cells if cell.id in done]
    if reused:
        say(f"resuming {output}: {len(reused)} of {total} cells already finished, {total - len(reused)} to run")
    todo = [(key, [c for c in cells if c.id not in done]) for key, cells in grid]
    todo = [(key, cells) for key, cells in todo if cells]

    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
    computed: list[str] = []
    skipped: list[str] = []
    failed: list[str] = []
    pending = _Grid(todo, dataset, config)
    in_flight: dict[str, tuple[Cell, SplitData]] = {}
    executor = make_executor(config, runner)
    bar = _Progress(total, len(reused), enabled=config.progress and echo is not None, say=say, name=executor.name)

    def record(row: dict[str, Any]) -> None:
        results.append(row)
        done[row["cell_id"]] = row

    def skip_impossible() -> None:
        while pending.skipped:
            key, cells, reason = pending.skipped.pop(0)
            for cell in cells:
                record(result_row(cell, dataset.name, SKIPPED, reason=f"impossible split: {reason}"))
                skipped.append(cell.id)
            bar.cells_done(len(cells), f"skipped {len(cells)} cell(s) of split {key.id}: {reason}")

    def finish(outcome: CellOutcome) -> None:
        cell, data = in_flight.pop(outcome.cell_id)
        counts = data.counts()
        run, reason = outcome.run, outcome.error
        metrics: dict[str, float] = {}
        if run is not None:
            try:
                metrics = evaluate(data.test_labels, run.scores)
                pixel = getattr(run, "pixel", None) or {}
                metrics.update(pixel.get("all", {}))
            except Exception as exc:  # noqa: BLE001 - scores that cannot be evaluated fail that cell only
                run, reason = None, f"{type(exc).__name__}: {exc}"
        if run is None:
            record(result_row(cell, dataset.name, FAILED, reason=reason, **counts))
            failed.append(cell.id)
            bar.failed += 1
            bar.cells_done(1, f"FAILED {cell.id}: {reason}" + (f"\n{outcome.traceback}" if outcome.traceback else ""))
        else:
            write_cell(output, cell, data, run, metrics)
            if run.info.get("data_drift"):
                DriftReport(list(run.info["data_drift"])).warn(f"cell {cell.id}: the test normals")
            record(
                result_row(
                    cell,
                    dataset.name,
                    OK,
                    auc_roc=metrics["auc_roc"],
                    auc_pr=metrics["auc_pr"],
                    pixel_auroc=metrics.get("pixel_auroc"),
                    pixel_aupro=metrics.get("pixel_aupro"),
                    pixel_by_type=json.dumps(pixel, sort_keys=True) if pixel else None,
                    fit_seconds=float(run.fit_seconds),
                    train_seconds=None if run.train_seconds is None else float(run.train_seconds),
                    score_seconds=float(run.score_seconds),
                    extractor=run.extractor,
                    ahl_guard=guard_cell(getattr(run, "info", None)),
                    **counts,
                )
            )
            computed.append(cell.id)
            bar.cells_done(1)
        pending.finished(cell.id)
        if kill_after and len(computed) >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        if todo:
            executor.start()
            warm = dataset.input_kind == "image"
            while pending or in_flight:
                while executor.running() < executor.capacity:
                    job = pending.next_ready()
                    skip_impossible()
                    if job is None:
                        break
                    if warm:  # before the first cell that runs (a grid of impossible splits extracts nothing)
                        warm = False
                        warmed = executor.warm(list(dataset.inputs), dataset.read)
                        if warmed:
                            say(
                                f"features cached once for the grid: {', '.join(f'{k} ({n} images)' for k, n in warmed.items())}"
                            )
                    in_flight[job[0].id] = job
                    executor.submit(*job)
                bar.running = executor.running()
                bar.refresh()
                if not in_flight:
                    continue
                outcomes = executor.wait()
                bar.running = executor.running()
                for outcome in outcomes:
                    finish(outcome)
    finally:
        executor.close()
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
    try:
        from ahl_plugins.evaluation.html_index import write_compare_index
        from ahl_plugins.evaluation.report import SUMMARY_MD

        write_compare_index(output, (output / SUMMARY_MD).read_text(), written, f"Compare: {dataset.name}")
    except Exception as exc:  # noqa: BLE001 - nor may the page
        say(f"warning: index.html not written: {type(exc).__name__}: {exc}")
    table = format_table(summary)
    return CompareResult(output, rows, summary, computed, reused, skipped, failed, written, table)


def make_executor(config: CompareConfig, runner: Runner) -> Executor:
    """The executor ``config`` asks for (``executor``, ``jobs``, ``threads``, ``ray_address``).

    It lives here, above both executor modules, so that :mod:`.executors` and
    :mod:`.ray_executor` never import each other (the Ray one builds on the local one).
    """
    if config.executor == "ray":
        from ahl_plugins.evaluation.compare.ray_executor import RayExecutor

        return RayExecutor(runner, address=config.ray_address, threads=config.threads, device=config.device)
    if config.jobs == 1:
        return SerialExecutor(runner)
    return LocalPool(runner, config.jobs, default_threads(config.threads, config.jobs))


class _Progress:
    """The grid's one progress bar, on the driver: cells done / total, running, failed, elapsed, time left."""

    def __init__(self, total: int, already: int, *, enabled: bool, say: Callable[[str], None], name: str) -> None:
        from tqdm.auto import tqdm

        # initial= keeps resumed cells out of the rate, smoothing=0 averages over the whole run (cells are alike)
        self.bar = tqdm(
            total=total,
            initial=already,
            unit="cell",
            disable=not enabled,
            dynamic_ncols=True,
            leave=True,
            smoothing=0,
            desc=f"compare ({name})",
        )
        self.say = say
        self.running = 0
        self.failed = 0

    def refresh(self) -> None:
        self.bar.set_postfix_str(f"{self.running} running, {self.failed} failed", refresh=True)

    def cells_done(self, n: int, message: str | None = None) -> None:
        if message:
            if self.bar.disable:
                self.say(message)
            else:
                self.bar.write(message)
        self.bar.update(n)
        self.refresh()

    def close(self) -> None:
        self.bar.close()
