"""Generalizability-estimator checks: weights for any T and history length, determinism."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ahl_plugins.plugins import PluginManager
from ahl_plugins.seeding import seeded
from ahl_plugins.testing.common import (
    ESTIMATOR_CASES,
    ESTIMATOR_SAMPLES,
    ContractReport,
    all_finite,
    describe,
    make_generator,
    open_check,
)


def _estimator_inputs(n_tasks: int, epochs: int, seed: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    data = make_generator(seed + n_tasks * 31 + epochs, torch.device("cpu"))
    history = torch.rand(epochs, ESTIMATOR_SAMPLES, n_tasks, generator=data)
    targets = (torch.arange(ESTIMATOR_SAMPLES) >= ESTIMATOR_SAMPLES - 6).float()
    error_weights = torch.where(targets[:, None] > 0, 1.0, 0.5).repeat(1, n_tasks)
    per_task = max(1, (ESTIMATOR_SAMPLES - 6) // n_tasks)
    for task in range(n_tasks):  # each base model trained on a slice of the normals
        error_weights[task * per_task : (task + 1) * per_task, task] = 0.0
    return history.to(device), targets.to(device), error_weights.to(device)


def check_estimator(
    name: str,
    manager: PluginManager | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ContractReport:
    """Check a registered generalizability estimator for several task counts and history lengths."""
    __tracebackhide__ = True
    manager, entry, checker, opts = open_check(manager, "estimators", name, options, "estimator.build")
    device = torch.device(device)

    def weights(n_tasks: int, epochs: int) -> torch.Tensor:
        with seeded(seed, device):
            with checker.guard("estimator.build", f"factory({n_tasks}, options)"):
                estimator = entry.build(n_tasks, options=opts)
            if not callable(getattr(estimator, "task_weights", None)):
                raise checker.fail(
                    "estimator.build", f"the factory returned {describe(estimator)}, which has no task_weights()"
                )
            if hasattr(estimator, "to"):
                estimator = estimator.to(device) or estimator
            history, targets, error_weights = _estimator_inputs(n_tasks, epochs, seed, device)
            with checker.guard(
                "estimator.weights", f"task_weights(history {epochs}×{ESTIMATOR_SAMPLES}×{n_tasks}, ...)"
            ):
                return estimator.task_weights(history, targets, error_weights)

    for i, (n_tasks, epochs) in enumerate(ESTIMATOR_CASES):
        w = weights(n_tasks, epochs)
        checker.ok("estimator.build")
        where = f"with T = {n_tasks} tasks and {epochs} epochs of history"
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (n_tasks,):
            raise checker.fail(
                "estimator.weights", f"{where} task_weights returned {describe(w)}; expected shape ({n_tasks},)"
            )
        if not w.is_floating_point() or not all_finite(w) or bool((w < 0).any()):
            raise checker.fail(
                "estimator.weights", f"{where} the weights must be finite and non-negative, got {w.tolist()}"
            )
        if abs(float(w.sum()) - 1.0) > 1e-4:
            raise checker.fail("estimator.weights", f"{where} the weights sum to {float(w.sum()):.6g}, not 1")
        if i > 0:
            continue
        again = weights(n_tasks, epochs)
        if not torch.allclose(w, again, rtol=1e-5, atol=1e-6):
            raise checker.fail(
                "estimator.determinism",
                f"{where} two estimators built and run under the same seed gave {w.tolist()} and {again.tolist()}",
            )
    checker.ok("estimator.weights")
    checker.ok("estimator.determinism")
    return checker.report
