"""``--executor ray``: every cell a Ray task, on a local Ray or an existing cluster.

Each task asks for ``--threads`` CPUs (1 when not given) and one GPU with
``--device cuda``. Ray retries a task whose worker died once
(``max_retries=1``); a cell's own exception is not retried but returned as
its outcome, exactly as in the local executors. A split's data go into the
object store once and every cell on it receives the same object. Ray is an
optional extra, imported only here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.errors import InvalidOptionsError
from ahl_plugins.evaluation.compare.executors import MAX_ATTEMPTS, CellOutcome, run_cell, set_threads
from ahl_plugins.evaluation.compare.runner import Runner
from ahl_plugins.evaluation.compare.splits import SplitData
from ahl_plugins.evaluation.grid import Cell

INSTALL_HINT = "pip install 'ahl-plugins[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidOptionsError(f"--executor ray needs Ray, an optional extra: {INSTALL_HINT}") from None
    return ray


def local_runtime_env() -> dict[str, Any]:
    """Workers of a Ray started here import what this process imports (e.g. a checkout not installed)."""
    paths = [p for p in dict.fromkeys([os.getcwd(), *sys.path]) if p and os.path.isdir(p)]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (Ray itself would retry for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray://... : left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise InvalidOptionsError(
            f"no Ray cluster answers at {address} ({exc}); start one there with `ray start --head`, or check "
            "--ray-address / RAY_ADDRESS (HEAD_HOST:6379)"
        ) from None


def _cell_task(runner: Runner, cell: Cell, data: SplitData, threads: int) -> CellOutcome:
    set_threads(threads)
    return run_cell(runner, cell, data)


def _warm_task(runner: Runner, inputs: Sequence[Path] | np.ndarray, read: ReadSettings, threads: int) -> dict[str, int]:
    set_threads(threads)
    warm = getattr(runner, "warm", None)
    return warm(inputs, read) if callable(warm) else {}


class RayExecutor:
    name = "ray"

    def __init__(self, runner: Runner, *, address: str | None, threads: int | None, device: str) -> None:
        self.runner = runner
        self.address = address
        self.cpus = int(threads or 1)  # what each task asks Ray for, and the torch threads it then uses
        self.gpus = 1 if str(device).startswith("cuda") else 0
        self.capacity = 1
        self.started_ray = False
        self.inflight: dict[Any, str] = {}  # task ref -> cell id
        self.splits: dict[str, list[Any]] = {}  # split id -> [data ref, cells in flight]
        self.of_cell: dict[str, str] = {}  # cell id -> split id

    def start(self) -> None:
        ray = import_ray()
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            try:
                if address:
                    check_reachable(address)
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(include_dashboard=False, log_to_driver=False, runtime_env=local_runtime_env())
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InvalidOptionsError(
                    f"could not connect to the Ray cluster at {address!r} ({type(exc).__name__}: {exc}); check "
                    "--ray-address / RAY_ADDRESS (e.g. 10.0.0.1:6379 after `ray start --head` there)"
                ) from None
            self.started_ray = True
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        if cpus < self.cpus or gpus < self.gpus:
            self.close()
            raise InvalidOptionsError(
                f"each cell asks Ray for {self.cpus} CPU(s){' and 1 GPU' if self.gpus else ''} but the cluster has "
                f"{cpus:g} CPU(s) and {gpus:g} GPU(s); lower --threads{' or use --device cpu' if self.gpus else ''}"
            )
        self.capacity = max(1, int(cpus // self.cpus))
        if self.gpus:
            self.capacity = min(self.capacity, max(1, int(gpus)))
        self.ray = ray
        self.runner_ref = ray.put(self.runner)
        options = {"num_cpus": self.cpus, "num_gpus": self.gpus}
        self.cell_task = ray.remote(_cell_task).options(max_retries=MAX_ATTEMPTS - 1, retry_exceptions=False, **options)
        self.warm_task = ray.remote(_warm_task).options(**options)

    def warm(self, inputs: Sequence[Path] | np.ndarray, read: ReadSettings = DEFAULT_READ) -> dict[str, int]:
        """Fill each node's feature cache once (a shared ``--cache-dir`` makes later nodes read, not extract)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [
            n["NodeID"]
            for n in self.ray.nodes()
            if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= self.cpus
        ]
        inputs_ref = self.ray.put(inputs)
        tasks = [
            self.warm_task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
                self.runner_ref, inputs_ref, read, self.cpus
            )
            for node in nodes
        ]
        done: dict[str, int] = {}
        for result in self.ray.get(tasks):
            done.update(result)
        return done

    def submit(self, cell: Cell, data: SplitData) -> None:
        split_id = data.key.id
        entry = self.splits.get(split_id)
        if entry is None:
            entry = self.splits[split_id] = [self.ray.put(data), 0]
        entry[1] += 1
        ref = self.cell_task.remote(self.runner_ref, cell, entry[0], self.cpus)
        self.inflight[ref] = cell.id
        self.of_cell[cell.id] = split_id

    def running(self) -> int:
        return len(self.inflight)

    def wait(self) -> list[CellOutcome]:
        refs = list(self.inflight)
        ready, _ = self.ray.wait(refs, num_returns=1)
        more, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        outcomes = []
        for ref in dict.fromkeys([*ready, *more]):
            cell_id = self.inflight.pop(ref)
            try:
                outcome = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:  # the worker (or its node) died on every attempt
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                outcome = CellOutcome(
                    cell_id,
                    error=f"WorkerLost: the Ray task died {MAX_ATTEMPTS} times ({type(exc).__name__}: {first}); "
                    "often out of memory: run fewer cells per node (a larger --threads reserves more CPUs per cell)",
                )
            split_id = self.of_cell.pop(cell_id)
            self.splits[split_id][1] -= 1
            if self.splits[split_id][1] == 0:
                del self.splits[split_id]
            outcomes.append(outcome)
        return outcomes

    def close(self) -> None:
        ray = getattr(self, "ray", None) or sys.modules.get("ray")
        if ray is not None:
            for ref in self.inflight:
                ray.cancel(ref, force=True)
        self.inflight.clear()
        self.splits.clear()
        if self.started_ray and ray is not None:
            ray.shutdown()
            self.started_ray = False
