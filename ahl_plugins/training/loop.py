"""The epoch loop both gradient trainers share: batches, step decay, divergence check, one record per epoch.

The base loop and end-to-end fine-tuning differ only in what one batch step does and which learning rates
they record; the loop around them is this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ahl_plugins.errors import TrainingDivergedError


def run_epochs(
    epochs: int,
    batches_per_epoch: int,
    step: Callable[[], torch.Tensor],
    schedule: Any,
    *,
    rates: Callable[[], dict[str, float]],
    what: str,
    hint: str,
    device: torch.device | str,
    progress: bool,
    before_epoch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``epochs`` × ``batches_per_epoch`` calls of ``step`` (which returns the batch loss, already applied).

    Returns ``{"epoch", "loss", **rates()}`` per epoch, the rates read at the epoch's start; a NaN or infinite
    mean loss raises :class:`TrainingDivergedError` naming ``what`` was trained and ``hint`` how to fix it.
    """
    from tqdm.auto import tqdm

    history: list[dict[str, Any]] = []
    bar = tqdm(range(epochs), desc=what, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        record = rates()
        if before_epoch is not None:
            before_epoch(epoch)
        total = torch.zeros((), device=device)
        for _ in range(batches_per_epoch):
            total = total + step().detach()
        schedule.step()
        mean = float(total) / batches_per_epoch
        if not math.isfinite(mean):
            raise TrainingDivergedError(f"the {what} loss became {mean} in epoch {epoch + 1}; {hint}")
        history.append({"epoch": epoch + 1, "loss": mean, **record})
        bar.set_postfix(loss=f"{mean:.4f}")
    return history
