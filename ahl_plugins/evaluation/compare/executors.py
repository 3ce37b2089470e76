"""Where cells run: in the driver process, or in a pool of local worker processes.

Executors only compute. They hand every finished cell back to the driver as
a :class:`CellOutcome`, and the driver alone writes results. A cell that
raises is an outcome with its error (the grid goes on); a worker process that
dies mid-cell is replaced and the cell tried once more, and a second death
makes the cell an outcome with that error. The Ray executor
(:mod:`.ray_executor`) has the same interface and builds on this module;
the driver picks one (``driver.make_executor``), so neither imports the other.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.errors import AHLError, ExecutorError
from ahl_plugins.evaluation.compare.runner import CellRun, Runner
from ahl_plugins.evaluation.compare.splits import SplitData
from ahl_plugins.evaluation.grid import Cell

#: Attempts of a cell whose worker died (the first run and one retry).
MAX_ATTEMPTS = 2


@dataclass
class CellOutcome:
    """A finished cell: its run, or the error that stopped it."""

    cell_id: str
    run: CellRun | None = None
    error: str | None = None
    traceback: str | None = None  # for errors that are not ahl-plugins' own (those explain themselves)


def run_cell(runner: Runner, cell: Cell, data: SplitData) -> CellOutcome:
    """Run one cell, turning its exception into an outcome: one broken cell must not cost the grid."""
    try:
        return CellOutcome(cell.id, run=runner(cell, data))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001
        trace = None if isinstance(exc, AHLError) else traceback.format_exc()
        return CellOutcome(cell.id, error=f"{type(exc).__name__}: {exc}", traceback=trace)


def set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))


def default_threads(threads: int | None, jobs: int) -> int | None:
    """``--threads``, or the cores shared out among the workers (so N workers do not oversubscribe)."""
    if threads is not None or jobs == 1:
        return threads
    return max(1, (os.cpu_count() or 1) // jobs)


class Executor(Protocol):
    name: str
    capacity: int  # cells worth keeping in flight

    def start(self) -> None: ...
    def warm(self, inputs: Sequence[Path] | np.ndarray, read: ReadSettings = DEFAULT_READ) -> dict[str, int]: ...
    def submit(self, cell: Cell, data: SplitData) -> None: ...
    def running(self) -> int: ...
    def wait(self) -> list[CellOutcome]: ...
    def close(self) -> None: ...


def _warm(runner: Runner, inputs: Sequence[Path] | np.ndarray, read: ReadSettings) -> dict[str, int]:
    warm = getattr(runner, "warm", None)
    return warm(inputs, read) if callable(warm) else {}


class SerialExecutor:
    """Cells one after another in this process (``--jobs 1``): today's behaviour."""

    name = "serial"
    capacity = 1

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.queue: deque[tuple[Cell, SplitData]] = deque()

    def start(self) -> None:
        pass

    def warm(self, inputs: Sequence[Path] | np.ndarray, read: ReadSettings = DEFAULT_READ) -> dict[str, int]:
        return _warm(self.runner, inputs, read)

    def submit(self, cell: Cell, data: SplitData) -> None:
        self.queue.append((cell, data))

    def running(self) -> int:
        return len(self.queue)

    def wait(self) -> list[CellOutcome]:
        cell, data = self.queue.popleft()
        return [run_cell(self.runner, cell, data)]

    def close(self) -> None:
        self.queue.clear()


# -- the local process pool ---------------------------------------------------------------


def _worker_main(conn: Connection, runner: Runner, threads: int | None) -> None:
    """A worker: receive ``(cell, split id, split data or None)``, send back the outcome.

    The split's data travel once per split and worker: later cells of the
    same split send only its id.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    set_threads(threads)
    conn.send(READY)
    held: tuple[str, SplitData] | None = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if message is None:
            return
        cell, split_id, data = message
        if data is not None:
            held = (split_id, data)
        assert held is not None and held[0] == split_id, "driver sent a cell without its split"
        conn.send(run_cell(runner, cell, held[1]))


#: A worker's first message: it started (so a death before it is a start-up failure, not a lost cell).
READY = "ready"


@dataclass
class _Worker:
    process: Any  # multiprocessing.Process
    conn: Connection
    split_id: str | None = None
    job: tuple[Cell, SplitData] | None = None
    attempt: int = 0
    ready: bool = False


#: Imported once by the fork server, so a new worker (or the replacement of a dead one) starts in
#: milliseconds instead of importing torch again.
PRELOAD = ["torch", "ahl_plugins.evaluation.compare.runner", "ahl_plugins.detector"]


def _context() -> Any:
    """A fork server where there is one (its children fork from a process that never ran torch
    threads, unlike forking the driver); plain spawn elsewhere."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


class LocalPool:
    """``--jobs N``: N worker processes, one cell each at a time."""

    name = "local"

    def __init__(self, runner: Runner, jobs: int, threads: int | None) -> None:
        self.runner = runner
        self.capacity = int(jobs)
        self.threads = threads
        self.context = _context()
        self.workers: list[_Worker] = []

    def start(self) -> None:
        self.workers = [self._spawn() for _ in range(self.capacity)]

    def _spawn(self) -> _Worker:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(
            target=_worker_main, args=(theirs, self.runner, self.threads), daemon=True, name="ahl-compare-worker"
        )
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def warm(self, inputs: Sequence[Path] | np.ndarray, read: ReadSettings = DEFAULT_READ) -> dict[str, int]:
        return _warm(self.runner, inputs, read)  # in the driver: the pool's cells then only read the cache

    def submit(self, cell: Cell, data: SplitData) -> None:
        worker = next((w for w in self.workers if w.job is None), None)
        if worker is None:
            raise RuntimeError("every worker is busy; wait() for one first")
        if not worker.process.is_alive():  # died while idle: nothing was lost, replace it
            worker.conn.close()
            self.workers[self.workers.index(worker)] = worker = self._spawn()
        self._send(worker, cell, data, attempt=1)

    def _send(self, worker: _Worker, cell: Cell, data: SplitData, attempt: int) -> None:
        split_id = data.key.id
        try:
            worker.conn.send((cell, split_id, None if worker.split_id == split_id else data))
        except OSError:  # it died before reading (could not start, or was killed): wait() collects and reports it
            pass
        worker.split_id, worker.job, worker.attempt = split_id, (cell, data), attempt

    def running(self) -> int:
        return sum(w.job is not None for w in self.workers)

    def wait(self) -> list[CellOutcome]:
        busy = [w for w in self.workers if w.job is not None]
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
        outcomes = []
        for worker in busy:
            if worker.conn in ready or worker.process.sentinel in ready:
                outcome = self._collect(worker)
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    def _collect(self, worker: _Worker) -> CellOutcome | None:
        """The worker's outcome; ``None`` while it still runs (or when its cell was sent again)."""
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if message == READY:
                    worker.ready = True
                    continue
                worker.job = None
                return message
            if worker.process.is_alive():
                return None
        except (EOFError, OSError):
            pass
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        if not worker.ready:
            raise ExecutorError(
                f"a --jobs worker process could not start (exit code {code}; its error is printed above). Workers "
                "re-import the program that started the compare: from Python, call run_compare in a script file "
                'under `if __name__ == "__main__":` (not from stdin), with a runner importable by module name'
            )
        assert (
            worker.job is not None
        )  # wait() collects busy workers only, and the loop above returns once it clears one
        cell, data = worker.job
        attempt = worker.attempt
        replacement = self._spawn()
        self.workers[self.workers.index(worker)] = replacement
        worker.conn.close()
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        if attempt < MAX_ATTEMPTS:
            self._send(replacement, cell, data, attempt + 1)
            return None
        return CellOutcome(
            cell.id,
            error=f"WorkerLost: the worker process died while running this cell, {attempt} times (last: {how}); "
            "often out of memory: try fewer --jobs",
        )

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self.workers:
            worker.process.join(timeout=5 if worker.job is None else 0.1)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)
            worker.conn.close()
        self.workers = []
