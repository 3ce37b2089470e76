"""The base training loop: the "without AHL" side of every comparison.

Balanced batches (normals / seen / pseudo anomalies), Adam, step decay,
gradient clipping and a fixed number of epochs. No validation and no model
selection: the trainer never sees test data, and the model after the last
epoch is the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ahl_plugins.errors import AHLError, DataError
from ahl_plugins.training.batches import balanced_indices
from ahl_plugins.training.calibration import calibrate_scorer
from ahl_plugins.training.data import TrainingData
from ahl_plugins.training.head_check import probe_heads

LossFn = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]


class TrainOptions(BaseModel):
    """Options of the base loop; defaults follow the DevNet/DRA code (batch 48, 20 batches, lr 2e-4)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(30, ge=1, description="passes of batches_per_epoch batches each")
    batch_size: int = Field(48, ge=2, description="samples per batch, split equally among normal/seen/pseudo")
    batches_per_epoch: int = Field(20, ge=1, description="batches per epoch (drawn with replacement)")
    lr: float = Field(2e-4, gt=0, description="Adam learning rate")
    weight_decay: float = Field(1e-5, ge=0, description="Adam weight decay")
    lr_step: int = Field(10, ge=1, description="epochs between learning-rate decays")
    lr_gamma: float = Field(0.1, gt=0, le=1, description="learning-rate decay factor")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm; null disables clipping")


def step_decay(
    optimizer: torch.optim.Optimizer, step: int, gamma: float, start_epoch: int = 0
) -> torch.optim.lr_scheduler.LRScheduler:
    """lr × gamma^(epoch // step), with ``epoch`` counted from ``start_epoch`` epochs already trained.

    A loop that continues another (AHL after a warm start) keeps the decay of
    one run of ``start_epoch`` + its own epochs. From epoch 0 it is
    ``StepLR``, so existing runs keep their exact learning rates.
    """
    if start_epoch == 0:
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: gamma ** ((epoch + start_epoch) // step))


class TrainingDivergedError(AHLError, FloatingPointError):
    """The loss became NaN or infinite."""


def train_base(
    scorer: nn.Module,
    loss: LossFn,
    data: TrainingData,
    options: TrainOptions | None = None,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train ``scorer`` in place on ``data``; return one ``{"epoch", "loss", "lr"}`` record per epoch.

    Calls ``scorer.prepare`` with the training normals first; batches and
    reference choices come from one ``torch.Generator`` seeded with ``seed``.
    The scorer is left on ``device`` in eval mode.
    """
    options = options or TrainOptions()
    if len(data.seen) + len(data.all_pseudo()) == 0:
        raise DataError(
            "training needs at least one labelled anomaly (y=1) or pseudo anomaly; got only normals. "
            "Label some anomalies, or enable a pseudo-anomaly generator"
        )
    generator = torch.Generator().manual_seed(int(seed))
    data = data.to(device)
    features, labels = data.stacked()
    labels_on_device = labels.to(device)
    labels = labels.cpu()

    scorer.to(device)
    scorer.prepare(data.normals.as_list(), generator)
    probe_heads(scorer, features.scales)
    scorer.train()
    parameters = [p for p in scorer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=options.lr, weight_decay=options.weight_decay)
    schedule = step_decay(optimizer, options.lr_step, options.lr_gamma)

    from tqdm.auto import tqdm

    history: list[dict[str, Any]] = []
    bar = tqdm(range(options.epochs), desc="training", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        lr = optimizer.param_groups[0]["lr"]
        total = torch.zeros((), device=device)
        for _ in range(options.batches_per_epoch):
            index = balanced_indices(labels, options.batch_size, generator).to(device)
            heads = scorer([t[index] for t in features.scales])
            value = loss(heads, labels_on_device[index])
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            if options.grad_clip is not None:
                nn.utils.clip_grad_norm_(parameters, options.grad_clip)
            optimizer.step()
            total = total + value.detach()
        schedule.step()
        mean = float(total) / options.batches_per_epoch
        if not math.isfinite(mean):
            raise TrainingDivergedError(
                f"the training loss became {mean} in epoch {epoch + 1}; lower the learning rate "
                f"(lr={options.lr}) or check the features for NaN/inf values"
            )
        history.append({"epoch": epoch + 1, "loss": mean, "lr": lr})
        bar.set_postfix(loss=f"{mean:.4f}")
    calibrate_scorer(scorer, data.normals.as_list())
    scorer.eval()
    return history
