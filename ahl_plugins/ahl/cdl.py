"""CDL: collaborative differentiable learning, the MAML-style meta-objective.

Every outer step, base model i starts from the unified parameters θ_g, takes
``inner_steps`` gradient steps on a balanced batch of its support set, and is
scored by its loss on a balanced batch of its query set with the adapted
parameters θ_i'. The unified model minimises Σ_i w_i · L_i^q(θ_i'), plus
``support_weight`` × Σ_i w_i · L_i^s(θ_g) when asked (the unified model's own
loss on the support batches, as in MAML++'s multi-step loss).

An inner step is either the paper's plain ``θ - lr·g`` (``sgd``) or a
``relative`` one, ``θ - lr·‖θ‖·g/‖g‖`` (norms over all trainable tensors):
each step then moves the heads by the share ``lr`` of their norm, whatever
the scale of the loss's gradient. ``layerwise`` takes that step per tensor,
``θ_t - lr·‖θ_t‖·g_t/‖g_t‖``, so a small head whose gradient dominates the
global direction is not moved by a multiple of its own norm (DRA's
default). At the paper's 2e-4 plain steps the heads moved by about 1e-4 of
their norm, so the base models never differed from the unified one
(``docs/deviations.md``).

The scorer is only ever called through ``torch.func.functional_call``, so any
plugin's heads work unchanged. The T tasks are independent within a step, so
they run as one ``torch.func.vmap`` over stacked task batches; a scorer that
cannot be vmapped (``.item()``, data-dependent Python branches, in-place
buffer updates) is detected on the first step and run by a loop over tasks
with ``torch.autograd.grad`` instead. Buffers are the unified model's, passed
unchanged to every base model, except ``task_constants`` (``T×...`` per
name, e.g. DRA's reference bank restricted to each task's support normals).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch.func import functional_call, grad_and_value, vmap

from ahl_plugins.ahl.hadg import TaskSet
from ahl_plugins.contracts import Loss
from ahl_plugins.errors import AHLError
from ahl_plugins.training.batches import balanced_indices
from ahl_plugins.training.positions import Positions, Supervision

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

logger = logging.getLogger(__name__)

INNER_UPDATES = ("sgd", "relative", "layerwise")

Params = dict[str, torch.Tensor]


def _total(values: Iterable[torch.Tensor]) -> torch.Tensor:
    """``sum`` of tensors, typed as a tensor (the builtin starts from the int 0); at least one value."""
    return cast(torch.Tensor, sum(values))


@dataclass(frozen=True)
class TaskBatch:
    """One balanced support batch and one balanced query batch per task (rows of the stacked features)."""

    support_rows: torch.Tensor  # T×B long
    support_labels: torch.Tensor  # T×B long
    query_rows: torch.Tensor
    query_labels: torch.Tensor


class TaskSampler:
    """Draws a :class:`TaskBatch`: the same batch size for every task, so tasks stack."""

    def __init__(self, taskset: TaskSet, batch_size: int, generator: torch.Generator) -> None:
        self.batch_size = int(batch_size)
        self.generator = generator
        self.parts = []
        for task in taskset:
            s_rows, s_labels = taskset.layout.rows(task, "support")
            q_rows, q_labels = taskset.layout.rows(task, "query")
            self.parts.append(
                (
                    torch.from_numpy(s_rows),
                    torch.from_numpy(s_labels),
                    torch.from_numpy(q_rows),
                    torch.from_numpy(q_labels),
                )
            )

    def _draw(self, rows: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        picks = balanced_indices(labels, self.batch_size, self.generator)
        return rows[picks], labels[picks]

    def draw_support(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Support batches only (``T×B`` rows and labels): what the ensemble ablation trains on."""
        drawn = [self._draw(rows, labels) for rows, labels, _, _ in self.parts]
        return torch.stack([r for r, _ in drawn]), torch.stack([y for _, y in drawn])

    def draw(self) -> TaskBatch:
        s_rows, s_labels, q_rows, q_labels = [], [], [], []
        for support_rows, support_labels, query_rows, query_labels in self.parts:
            r, y = self._draw(support_rows, support_labels)
            s_rows.append(r)
            s_labels.append(y)
            r, y = self._draw(query_rows, query_labels)
            q_rows.append(r)
            q_labels.append(y)
        return TaskBatch(torch.stack(s_rows), torch.stack(s_labels), torch.stack(q_rows), torch.stack(q_labels))


def gather(features: Sequence[torch.Tensor], rows: torch.Tensor) -> list[torch.Tensor]:
    """Per-scale features of a ``T×B`` block of rows, as ``T×B×...`` tensors (one index per scale)."""
    flat = rows.reshape(-1).to(features[0].device)
    return [f.index_select(0, flat).reshape(*rows.shape, *f.shape[1:]) for f in features]


@dataclass(frozen=True)
class StepResult:
    """What one outer step produced (all detached)."""

    objective: float
    query_losses: torch.Tensor  # (T,)
    support_losses: torch.Tensor  # (T,) support loss before adaptation
    adapted: Params  # name -> T×shape, θ_i' of every base model
    grad_norm: float | None
    inner_change: torch.Tensor  # (T,) ‖θ_i' − θ_g‖ / ‖θ_g‖: how far each base model moved


class MetaLearner:
    """Runs the tasks functionally from the unified scorer's parameters and takes outer steps."""

    def __init__(
        self,
        scorer: ScorerModule,
        loss: Loss,
        *,
        inner_steps: int,
        inner_lr: float,
        first_order: bool = False,
        vectorize: bool = True,
        inner_update: str = "sgd",
        support_weight: float = 0.0,
        supervision: Supervision | None = None,
    ) -> None:
        if inner_update not in INNER_UPDATES:
            raise AHLError(f"inner_update must be one of {list(INNER_UPDATES)}, got {inner_update!r}")
        self.scorer = scorer
        self.loss = loss
        #: how the loss is called: per-position targets, gathered by the tasks' rows, for a loss that declares them
        self.supervision = supervision or Supervision(loss)
        self.inner_steps = int(inner_steps)
        self.inner_lr = float(inner_lr)
        self.inner_update = inner_update
        self.first_order = bool(first_order)
        self.support_weight = float(support_weight)
        self.vectorize = bool(vectorize)
        self.vectorized: bool | None = None if vectorize else False  # None: not tried yet
        self.parameters: Params = {n: p for n, p in scorer.named_parameters() if p.requires_grad}
        #: per-task buffer values (name -> T×...), replacing the unified model's in base model i
        self.task_constants: Params = {}
        if not self.parameters:
            raise AHLError(
                f"scorer {type(scorer).__name__} has no trainable parameters; AHL meta-learns the scoring "
                "heads, so they must be nn.Parameters with requires_grad=True"
            )

    def constants(self) -> Params:
        """Frozen parameters and buffers: the unified model's, shared by every base model."""
        consts: Params = {n: p for n, p in self.scorer.named_parameters() if not p.requires_grad}
        consts.update(dict(self.scorer.named_buffers()))
        return consts

    # -- one task, two implementations ---------------------------------------------------------------------
    def _loss(self, p: Params, consts: Params, x, y, positions: Positions) -> torch.Tensor:
        """The loss of the heads with parameters ``p`` on one batch (per-position targets where declared)."""
        supervision = self.supervision
        heads = functional_call(self.scorer, (p, consts), (x,), supervision.forward_kwargs)
        return supervision(heads, y, positions)

    def _task_func(self, params: Params, consts: Params, task_consts: Params, sx, sy, sp, qx, qy, qp):
        """Adapt and take the query loss with torch.func (vmappable)."""
        consts = {**consts, **task_consts}

        def support_loss(p: Params) -> torch.Tensor:
            return self._loss(p, consts, sx, sy, sp)

        p = params
        first = None
        for _ in range(self.inner_steps):
            grads, value = grad_and_value(support_loss)(p)
            if first is None:
                first = value
            if self.first_order:
                grads = {k: g.detach() for k, g in grads.items()}
            p = self._inner_step(p, grads)
        query = self._loss(p, consts, qx, qy, qp)
        return query, first, p

    def _inner_step(self, p: Params, grads: Mapping[str, torch.Tensor | None]) -> Params:
        """One adaptation step (pure: safe under vmap); ``None`` gradients leave a tensor unchanged."""
        used = {k: g for k in p if (g := grads.get(k)) is not None}
        step: float | torch.Tensor
        if self.inner_update == "sgd":
            step = self.inner_lr
        elif self.inner_update == "layerwise":
            return {k: (p[k] - self._tensor_step(p[k], used[k]) if k in used else p[k]) for k in p}
        else:
            theta_norm = torch.sqrt(_total((p[k] ** 2).sum() for k in used))
            grad_norm = torch.sqrt(_total((g**2).sum() for g in used.values())).clamp_min(1e-12)
            step = self.inner_lr * theta_norm / grad_norm
            if self.first_order:
                step = step.detach()
        return {k: (p[k] - step * used[k] if k in used else p[k]) for k in p}

    def _tensor_step(self, theta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``lr·‖θ_t‖·g_t/‖g_t‖`` for one tensor: every tensor moves by the share ``lr`` of its own norm."""
        step = self.inner_lr * theta.norm() / grad.norm().clamp_min(1e-12)
        return (step.detach() if self.first_order else step) * grad

    def _task_autograd(self, params: Params, consts: Params, task_consts: Params, sx, sy, sp, qx, qy, qp):
        """The same with torch.autograd.grad, for scorers that cannot be vmapped."""
        consts = {**consts, **task_consts}
        p = dict(params)
        first = None
        for _ in range(self.inner_steps):
            value = self._loss(p, consts, sx, sy, sp)
            if first is None:
                first = value
            grads = torch.autograd.grad(
                value,
                list(p.values()),
                create_graph=not self.first_order,
                # the support loss is backpropagated too when it is part of the objective
                retain_graph=not self.first_order or bool(self.support_weight),
                allow_unused=True,
            )
            p = self._inner_step(p, dict(zip(p, grads, strict=True)))
        query = self._loss(p, consts, qx, qy, qp)
        return query, first, p

    def task_losses(
        self,
        support_x: list[torch.Tensor],
        support_y: torch.Tensor,
        query_x: list[torch.Tensor],
        query_y: torch.Tensor,
        support_positions: Positions | None = None,
        query_positions: Positions | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, Params]:
        """Query losses ``(T,)``, first support losses ``(T,)`` and adapted parameters ``{name: T×...}``.

        ``*_positions``: per-position targets ``{name: T×B×h×w}`` for a loss that declares them (else empty)."""
        params = self.parameters
        consts = self.constants()
        sp, qp = support_positions or {}, query_positions or {}
        if self.vectorized is not False:
            try:
                run = vmap(self._task_func, in_dims=(None, None, 0, 0, 0, 0, 0, 0, 0), randomness="different")
                query, first, adapted = run(
                    params, consts, self.task_constants, support_x, support_y, sp, query_x, query_y, qp
                )
                if self.vectorized is None:
                    logger.info("AHL: tasks batched with torch.func.vmap")
                self.vectorized = True
                return query, first, adapted
            except AHLError:
                raise
            except Exception as exc:  # any failure of vmap on a third-party scorer
                if self.vectorized:
                    raise
                self.vectorized = False
                logger.warning(
                    "AHL: scorer %s cannot be run under torch.func.vmap (%s: %s); falling back to a Python loop "
                    "over tasks (slower, same result)",
                    type(self.scorer).__name__,
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
        results = [
            self._task_autograd(
                params,
                consts,
                self._task_slice(self.task_constants, t),
                [x[t] for x in support_x],
                support_y[t],
                self._task_slice(sp, t),
                [x[t] for x in query_x],
                query_y[t],
                self._task_slice(qp, t),
            )
            for t in range(support_y.shape[0])
        ]
        query = torch.stack([r[0] for r in results])
        first = torch.stack([r[1] for r in results])
        adapted = {k: torch.stack([r[2][k] for r in results]) for k in params}
        return query, first, adapted

    @staticmethod
    def _task_slice(values: Params, task: int) -> Params:
        """Task ``task``'s values of a ``{name: T×...}`` dict."""
        return {k: v[task] for k, v in values.items()}

    # -- the outer step -------------------------------------------------------------------------------------
    def outer_step(
        self,
        optimizer: torch.optim.Optimizer,
        features: Sequence[torch.Tensor],
        batch: TaskBatch,
        weights: torch.Tensor,
        grad_clip: float | None,
    ) -> StepResult:
        """One meta-update of θ_g; the gradient is computed and applied in the same step (defect 4)."""
        device = features[0].device
        optimizer.zero_grad(set_to_none=True)
        query, first, adapted = self.task_losses(
            gather(features, batch.support_rows),
            batch.support_labels.to(device),
            gather(features, batch.query_rows),
            batch.query_labels.to(device),
            self.supervision.rows(batch.support_rows),
            self.supervision.rows(batch.query_rows),
        )
        w = weights.to(query.device, query.dtype)
        objective = (w * query).sum()
        if self.support_weight:
            # the support losses at θ_g, before adaptation: the unified model's own loss on every task
            objective = objective + self.support_weight * (w * first).sum()
        if not torch.isfinite(objective):
            raise AHLError(
                f"AHL meta-objective became {objective.item()} (query losses {query.detach().cpu().tolist()}); "
                "lower AHLOptions.inner_lr or outer_lr, or enable grad_clip"
            )
        objective.backward()
        grad_norm = None
        params = list(self.parameters.values())
        if grad_clip is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
        with torch.no_grad():
            n_tasks = query.shape[0]
            moved = sum(
                ((adapted[k] - p.unsqueeze(0)) ** 2).reshape(n_tasks, -1).sum(1) for k, p in self.parameters.items()
            )
            size = _total((p**2).sum() for p in self.parameters.values()).clamp_min(1e-24)
            inner_change = (moved / size).sqrt().float().cpu()
        optimizer.step()
        return StepResult(
            objective=float(objective.detach()),
            query_losses=query.detach(),
            support_losses=first.detach(),
            adapted={k: v.detach() for k, v in adapted.items()},
            grad_norm=grad_norm,
            inner_change=inner_change,
        )

    # -- scoring with the base models (for SGE) -------------------------------------------------------------
    @torch.no_grad()
    def score_base_models(
        self,
        adapted: Params,
        features: Sequence[torch.Tensor],
        rows: torch.Tensor,
        per_task: bool = True,
        fixed: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``T×N`` anomaly scores of every base model θ_i' on the given rows, in eval mode.

        ``per_task``: base model i reads its ``task_constants``; False: the unified model's buffers (for
        parameters that are not the T base models', e.g. the unified model's own). ``fixed``: the scorer's
        parameter-free heads of these rows (:func:`fixed_heads`, ``(N,)`` each), computed once by the caller.
        """
        consts = self.constants()
        task_constants = self.task_constants if per_task else {}
        n_tasks = next(iter(adapted.values())).shape[0]
        per_sample = sum(int(np.prod(f.shape[1:])) for f in features)
        chunk = max(16, int(2**24 // max(1, per_sample * (n_tasks if self.vectorized else 1))))
        was_training = self.scorer.training
        self.scorer.eval()

        def score(p: Params, task_consts: Params, x: list[torch.Tensor], given: Params) -> torch.Tensor:
            kwargs = {"fixed": given} if given else {}
            return self.scorer.combine(functional_call(self.scorer, (p, {**consts, **task_consts}), (x,), kwargs))

        try:
            out = []
            for start in range(0, rows.numel(), chunk):
                index = rows[start : start + chunk].to(features[0].device)
                x = [f.index_select(0, index) for f in features]
                given = {name: value[start : start + chunk] for name, value in (fixed or {}).items()}
                if self.vectorized:
                    batched = vmap(score, in_dims=(0, 0, None, None), randomness="different")
                    out.append(batched(adapted, task_constants, x, given))
                else:
                    slices = [
                        (self._task_slice(adapted, t), self._task_slice(task_constants, t)) for t in range(n_tasks)
                    ]
                    out.append(torch.stack([score(p, c, x, given) for p, c in slices]))
            return torch.cat(out, dim=1).float().cpu()
        finally:
            self.scorer.train(was_training)


@torch.no_grad()
def fixed_heads(scorer: ScorerModule, features: Sequence[torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The scorer's parameter-free heads of ``rows`` (``(N,)`` each), once, for :meth:`MetaLearner.score_base_models`.

    Optional scorer method ``fixed_heads(features)`` (the Scorer contract, ``ahl_plugins.contracts``); ``{}`` for a scorer without one. Every
    base model would compute the same values, so computing them here once saves a search per task and epoch.
    """
    compute = getattr(scorer, "fixed_heads", None)
    if not callable(compute):
        return {}
    was_training = scorer.training
    scorer.eval()
    try:
        index = rows.to(features[0].device)
        heads = compute([f.index_select(0, index) for f in features])
    finally:
        scorer.train(was_training)
    return {name: value.detach() for name, value in heads.items()}
