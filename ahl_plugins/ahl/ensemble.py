"""The paper's "simple ensemble" ablation: one base model per task, trained independently, scores averaged.

Each member starts from the same initial heads and is trained by the ordinary
(non-meta) loop on balanced batches of its own task's support set, so the
members differ only through the heterogeneous data HADG gave them; that
isolates what AHL's collaborative meta-learning adds over plain ensembling
of the same tasks. The members train as one stacked set of parameters
(``vmap`` over members, one Adam whose update is element-wise, so each
member's trajectory is exactly its own; gradient clipping is per member).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn
from torch.func import functional_call, vmap

from ahl_plugins.ahl.cdl import TaskSampler, gather
from ahl_plugins.contracts import Loss
from ahl_plugins.errors import AHLError
from ahl_plugins.training.base import step_decay
from ahl_plugins.training.positions import Supervision

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

logger = logging.getLogger(__name__)


class EnsembleScorer(nn.Module):
    """Averages its members' head scores; same contract as the scorer it was built from.

    ``combine`` is the members' own, applied to the averaged heads; for the
    built-in scorers (DevNet: one head; DRA: seen + pseudo + residual −
    normal) combining is linear, so this equals averaging the members'
    anomaly scores.
    """

    def __init__(self, members: Sequence[ScorerModule]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.head_names = tuple(getattr(members[0], "head_names", ()))

    @classmethod
    def from_template(cls, scorer: ScorerModule, n_members: int) -> EnsembleScorer:
        """An ensemble of ``n_members`` copies of ``scorer`` (e.g. to load saved weights into)."""
        return cls([copy.deepcopy(scorer) for _ in range(n_members)])

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        outputs = [member(features) for member in self.members]
        names = self.head_names or tuple(outputs[0])
        return {name: torch.stack([out[name] for out in outputs]).mean(dim=0) for name in names}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return _scorer(self.members[0]).combine(heads)

    @torch.no_grad()
    def calibrate(self, normal_features: Sequence[torch.Tensor]) -> None:
        """Calibrate every member alike, on the averaged heads of the training normals.

        One calibration for all keeps ``combine`` of the averaged heads equal to
        the mean of the members' own scores (the combination is linear).
        """
        calibrators = [c for m in self.members if callable(c := getattr(m, "calibrate_heads", None))]
        if len(calibrators) != len(self.members):
            return
        n = int(normal_features[0].shape[0])
        parts = [self([f[i : i + 256] for f in normal_features]) for i in range(0, n, 256)]
        heads = {name: torch.cat([p[name] for p in parts]) for name in parts[0]}
        for calibrate_heads in calibrators:
            calibrate_heads(heads)

    def head_maps(self, features: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """The members' per-scale head maps, averaged (as forward averages their heads)."""
        outputs = [_scorer(member).head_maps(features) for member in self.members]
        return [
            {name: torch.stack([out[scale][name] for out in outputs]).mean(dim=0) for name in outputs[0][scale]}
            for scale in range(len(outputs[0]))
        ]

    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        for member in self.members:
            prepare = getattr(member, "prepare", None)
            if callable(prepare):
                prepare(normal_features, generator)


def _scorer(member: nn.Module) -> ScorerModule:
    """A member as the scorer it is (``nn.ModuleList`` hands out plain modules)."""
    return cast("ScorerModule", member)


def _assign(module: nn.Module, values: Mapping[str, torch.Tensor]) -> None:
    state: dict[str, torch.Tensor] = dict(module.named_parameters())
    state.update(dict(module.named_buffers()))
    with torch.no_grad():
        for name, value in values.items():
            state[name].copy_(value)


def train_ensemble(
    scorer: ScorerModule,
    loss: Loss,
    features: Sequence[torch.Tensor],
    sampler: TaskSampler,
    *,
    n_members: int,
    epochs: int,
    steps_per_epoch: int,
    lr: float,
    weight_decay: float,
    lr_step: int,
    lr_gamma: float,
    grad_clip: float | None,
    vectorize: bool = True,
    progress: Any = None,
    start_epoch: int = 0,
    supervision: Supervision | None = None,
) -> tuple[ScorerModule, list[dict[str, Any]], bool]:
    """Train ``n_members`` copies on their tasks' support sets; returns (ensemble, per-epoch records, vmapped).

    ``start_epoch``: epochs the template was already trained (a warm start); the lr decay continues from there.
    ``supervision``: how the loss is called (per-position targets for a loss that declares them); default: as
    ``loss(heads, labels)``.
    """
    trainable = {n: p for n, p in scorer.named_parameters() if p.requires_grad}
    if not trainable:
        raise AHLError(f"scorer {type(scorer).__name__} has no trainable parameters to train an ensemble of")
    stacked = {
        n: p.detach().unsqueeze(0).repeat(n_members, *([1] * p.dim())).requires_grad_() for n, p in trainable.items()
    }
    consts = {n: p.detach() for n, p in scorer.named_parameters() if not p.requires_grad}
    consts.update({n: b.detach() for n, b in scorer.named_buffers()})
    # every member owns its buffers (e.g. running statistics), as an independent model would
    stacked_consts = {n: v.unsqueeze(0).repeat(n_members, *([1] * v.dim())).clone() for n, v in consts.items()}
    optimizer = torch.optim.Adam(stacked.values(), lr=lr, weight_decay=weight_decay)
    scheduler = step_decay(optimizer, lr_step, lr_gamma, start_epoch)
    device = features[0].device

    supervision = supervision or Supervision(loss)

    def member_loss(p, c, x, y, positions):
        return supervision(functional_call(scorer, (p, c), (x,), supervision.forward_kwargs), y, positions)

    vectorized: bool | None = None if vectorize else False

    def losses_of(x: list[torch.Tensor], y: torch.Tensor, positions: dict[str, torch.Tensor]) -> torch.Tensor:
        nonlocal vectorized
        if vectorized is not False:
            try:
                out = vmap(member_loss, randomness="different")(stacked, stacked_consts, x, y, positions)
                vectorized = True
                return out
            except AHLError:
                raise
            except Exception as exc:
                if vectorized:
                    raise
                vectorized = False
                logger.warning(
                    "ensemble: scorer %s cannot be vmapped (%s); training the members in a loop",
                    type(scorer).__name__,
                    type(exc).__name__,
                )
        return torch.stack(
            [
                member_loss(
                    {k: v[t] for k, v in stacked.items()},
                    {k: v[t] for k, v in stacked_consts.items()},
                    [f[t] for f in x],
                    y[t],
                    {k: v[t] for k, v in positions.items()},
                )
                for t in range(n_members)
            ]
        )

    scorer.train()
    records = []
    for epoch in range(epochs):
        started = time.perf_counter()
        sums = torch.zeros(n_members)
        for _ in range(steps_per_epoch):
            rows, labels = sampler.draw_support()
            losses = losses_of(gather(features, rows), labels.to(device), supervision.rows(rows))
            if not torch.isfinite(losses).all():
                raise AHLError(
                    f"ensemble training diverged: member losses {losses.detach().cpu().tolist()}; lower outer_lr"
                )
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            if grad_clip is not None:
                grads = [p.grad for p in stacked.values() if p.grad is not None]
                norms = torch.sqrt(cast(torch.Tensor, sum(g.pow(2).reshape(n_members, -1).sum(dim=1) for g in grads)))
                factor = (grad_clip / (norms + 1e-6)).clamp(max=1.0)
                for g in grads:
                    g.mul_(factor.reshape(-1, *([1] * (g.dim() - 1))))
            optimizer.step()
            sums += losses.detach().cpu()
        scheduler.step()
        records.append(
            {
                "epoch": start_epoch + epoch + 1,
                "member_losses": (sums / steps_per_epoch).tolist(),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
            }
        )
        if progress is not None:
            progress.update(1)
    members = []
    for t in range(n_members):
        member = copy.deepcopy(scorer)
        _assign(member, {k: v[t].detach() for k, v in stacked.items()})
        _assign(member, {k: v[t] for k, v in stacked_consts.items()})
        member.eval()
        members.append(member)
    ensemble = EnsembleScorer(members)
    ensemble.eval()
    return _scorer(ensemble), records, bool(vectorized)
