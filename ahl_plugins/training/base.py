"""The base training loop: the "without AHL" side of every comparison.
Balanced batches (normals / seen / pseudo anomalies), Adam, step decay,
gradient clipping and a fixed number of epochs. No validation and no model
selection: the trainer never sees test data, and the model after the last
epoch is the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ahl_plugins.contracts import Loss
from ahl_plugins.errors import DataError
from ahl_plugins.training.batches import balanced_indices
from ahl_plugins.training.calibration import calibrate_scorer
from ahl_plugins.training.data import TrainingData
from ahl_plugins.training.head_check import probe_heads
from ahl_plugins.training.loop import run_epochs
from ahl_plugins.training.options import TrainOptions
from ahl_plugins.training.positions import Supervision

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule


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


def train_base(
    scorer: ScorerModule,
    loss: Loss,
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
    supervision = Supervision.build(scorer, loss, data, features.scales)
    scorer.train()
    parameters = [p for p in scorer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=options.lr, weight_decay=options.weight_decay)
    schedule = step_decay(optimizer, options.lr_step, options.lr_gamma)

    def step() -> torch.Tensor:
        index = balanced_indices(labels, options.batch_size, generator).to(device)
        heads = scorer([t[index] for t in features.scales], **supervision.forward_kwargs)
        value = supervision(heads, labels_on_device[index], supervision.rows(index))
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if options.grad_clip is not None:
            nn.utils.clip_grad_norm_(parameters, options.grad_clip)
        optimizer.step()
        return value

    history = run_epochs(
        options.epochs,
        options.batches_per_epoch,
        step,
        schedule,
        rates=lambda: {"lr": optimizer.param_groups[0]["lr"]},
        what="training",
        device=device,
        progress=progress,
        hint=f"lower the learning rate (lr={options.lr}) or check the features for NaN/inf values",
    )
    calibrate_scorer(scorer, data.normals.as_list())
    scorer.eval()
    return history
