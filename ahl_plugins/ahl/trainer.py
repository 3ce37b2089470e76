"""``train_ahl``: HADG tasks -> CDL meta-learning weighted by SGE -> the unified scorer.

See ``docs/ahl.md`` for the algorithm as implemented, the deviations from the
paper and from the authors' release, and the history format returned here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from ahl_plugins.ahl.cdl import MetaLearner, TaskSampler, fixed_heads, gather
from ahl_plugins.ahl.ensemble import train_ensemble
from ahl_plugins.ahl.hadg import TaskSet, build_tasks
from ahl_plugins.ahl.options import AHLOptions
from ahl_plugins.ahl.sge import (
    accepts_reference,
    check_weights,
    combine_weights,
    estimation_samples,
    normalise_scores,
    task_prior,
)
from ahl_plugins.contracts import (
    GeneralizabilityEstimator,
    Loss,
)
from ahl_plugins.devices import resolve_device
from ahl_plugins.errors import AHLError, DataError, InvalidOptionsError
from ahl_plugins.seeding import seeded
from ahl_plugins.training.base import step_decay, train_base
from ahl_plugins.training.calibration import calibrate_scorer
from ahl_plugins.training.data import TrainingData
from ahl_plugins.training.head_check import probe_heads
from ahl_plugins.training.options import TrainOptions
from ahl_plugins.training.positions import Supervision

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

logger = logging.getLogger(__name__)

HISTORY_FORMAT = 1
#: Builds the estimator from the number of tasks HADG made.
EstimatorFactory = Callable[[int], GeneralizabilityEstimator]


def _options(options: AHLOptions | Mapping[str, Any] | None) -> AHLOptions:
    if options is None:
        return AHLOptions()
    if isinstance(options, AHLOptions):
        return options
    from pydantic import ValidationError

    try:
        return AHLOptions(**dict(options))
    except ValidationError as exc:
        raise InvalidOptionsError(
            f"invalid AHL options; valid options: {', '.join(AHLOptions.model_fields)}\n{exc}"
        ) from None


def _uses_vmap(options: AHLOptions, features: list[torch.Tensor]) -> bool:
    if options.task_batching == "auto":
        return all(f.dim() == 2 for f in features)
    return options.task_batching == "vmap"


def _stack(data: TrainingData) -> tuple[list[torch.Tensor], torch.Tensor]:
    try:
        features, labels = data.stacked()
    except (RuntimeError, ValueError) as exc:
        raise DataError(
            f"training features of normals, seen anomalies and pseudo anomalies do not stack ({exc}); "
            "they must come from the same feature extractor"
        ) from None
    return features.as_list(), labels


def train_ahl(
    scorer: ScorerModule,
    loss: Loss,
    data: TrainingData,
    options: AHLOptions | Mapping[str, Any] | None = None,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    progress: bool = False,
    estimator: GeneralizabilityEstimator | EstimatorFactory | None = None,
    prepare_scorer: bool = True,
) -> tuple[ScorerModule, dict[str, Any]]:
    """Meta-train ``scorer`` with AHL on frozen features; returns (unified scorer, history).

    ``scorer`` is trained in place and returned in ``eval()`` mode, except for
    ``ablation="ensemble"``, which returns a new :class:`EnsembleScorer`.
    ``prepare_scorer`` calls ``scorer.prepare(normals, generator)`` first;
    pass False when the scorer was already prepared (e.g. trained by the
    caller). With ``warm_start`` > 0 the base loop trains the first epochs
    (and prepares the scorer) and meta-training continues from its model.
    ``estimator`` weights the tasks: an estimator, or a callable that builds one from the task count once HADG
    has built the tasks (the detector passes the registered one, ``ahl_plugins.components``); only the
    ensemble ablation runs without one.
    """
    options = _options(options)
    if len(data.seen) + sum(len(pool) for pool in data.pseudo.values()) == 0:
        raise DataError(
            "AHL needs at least one labelled anomaly (y=1) or pseudo anomaly; got only normals. "
            "Label some anomalies, or enable a pseudo-anomaly generator"
        )
    device = device if isinstance(device, torch.device) else resolve_device(str(device))
    started = time.perf_counter()
    with seeded(seed, device):
        scorer.to(device)
        features, labels = _stack(data)
        features = [f.to(device) for f in features]
        warm_records = _warm_start(scorer, loss, data, options, seed, device) if options.warm_epochs else []
        if prepare_scorer and not warm_records and callable(getattr(scorer, "prepare", None)):
            scorer.prepare(data.normals.to(device).as_list(), torch.Generator().manual_seed(int(seed)))
        probe_heads(scorer, features)
        supervision = Supervision.build(scorer, loss, data, features)
        t0 = time.perf_counter()
        taskset = build_tasks(
            data,
            n_clusters=options.n_clusters,
            min_cluster_size=options.min_cluster_size,
            random_halves_task=options.random_halves_task,
            query_normals=options.query_normals,
            single_anomaly=options.single_anomaly,
            random_groups=options.ablation == "random_tasks",
            seed=seed,
        )
        task_seconds = time.perf_counter() - t0
        n_tasks = len(taskset)
        # the ensemble ablation trains T independent base models, each with the base loop's batch
        batch = options.batch_size if options.ablation == "ensemble" else options.task_batch(n_tasks)
        sampler = TaskSampler(taskset, batch, torch.Generator().manual_seed(int(seed) + 1))
        history: dict[str, Any] = {
            "format": HISTORY_FORMAT,
            "algorithm": "ahl",
            "ablation": options.ablation,
            "seed": int(seed),
            "options": options.model_dump(mode="json"),
            "n_tasks": n_tasks,
            "task_batch_size": batch,
            "warm_start_epochs": warm_records,
            **taskset.summary(),
        }
        bar = _progress_bar(options.epochs - options.warm_epochs, progress)
        try:
            if options.ablation == "ensemble":
                ensemble, records, vectorized = train_ensemble(
                    scorer,
                    loss,
                    features,
                    sampler,
                    n_members=n_tasks,
                    epochs=options.epochs - options.warm_epochs,
                    start_epoch=options.warm_epochs,
                    steps_per_epoch=options.batches_per_epoch,
                    lr=options.outer_lr,
                    weight_decay=options.weight_decay,
                    lr_step=options.lr_step,
                    lr_gamma=options.lr_gamma,
                    grad_clip=options.grad_clip,
                    vectorize=_uses_vmap(options, features),
                    progress=bar,
                    supervision=supervision,
                )
                calibrate_scorer(ensemble, data.normals.to(device).as_list())
                history.update(
                    estimator=None,
                    vectorized=vectorized,
                    epochs=records,
                    timing={"tasks_seconds": task_seconds, "total_seconds": time.perf_counter() - started},
                )
                return ensemble.to(device), history
            result = _meta_train(scorer, supervision, features, labels, taskset, sampler, options, seed, estimator, bar)
        finally:
            if bar is not None:
                bar.close()
    calibrate_scorer(scorer, data.normals.to(device).as_list())
    history.update(result)
    history["timing"]["tasks_seconds"] = task_seconds
    history["timing"]["total_seconds"] = time.perf_counter() - started
    scorer.eval()
    return scorer, history


def _warm_start(
    scorer: ScorerModule, loss: Loss, data: TrainingData, options: AHLOptions, seed: int, device: torch.device
) -> list[dict[str, Any]]:
    """Train the first ``warm_epochs`` with the base loop, at AHL's update budget; returns its epoch records.

    The base loop takes ``batches_per_epoch`` steps per epoch where AHL takes
    ``n_outer_steps``, so its lr is ``outer_lr × n_outer_steps /
    batches_per_epoch`` (2e-4 under the defaults: the base model's own).
    """
    return train_base(scorer, loss, data, base_loop_options(options, options.warm_epochs), seed=seed, device=device)


def base_loop_options(options: AHLOptions, epochs: int) -> TrainOptions:
    """The base loop at AHL's update budget for ``epochs`` epochs (shared by the warm start and the guard)."""
    return TrainOptions(
        epochs=epochs,
        batch_size=options.batch_size,
        batches_per_epoch=options.batches_per_epoch,
        lr=options.outer_lr * options.n_outer_steps / options.batches_per_epoch,
        weight_decay=options.weight_decay,
        lr_step=options.lr_step,
        lr_gamma=options.lr_gamma,
        grad_clip=options.grad_clip,
    )


def _task_references(scorer: ScorerModule, taskset: TaskSet) -> dict[str, torch.Tensor]:
    """The scorer's per-task buffers for ``task_references="support"`` (it may return {}: nothing to restrict)."""
    restrict = getattr(scorer, "task_buffers", None)
    if not callable(restrict):
        raise InvalidOptionsError(
            f"task_references='support' needs a scorer with task_buffers(support_normals); "
            f"{type(scorer).__name__} has none (DRA has): use task_references='all'"
        )
    values = dict(restrict([task.support_normals for task in taskset]))
    buffers = dict(scorer.named_buffers())
    bad = [name for name in values if name not in buffers or values[name].shape[0] != len(taskset)]
    if bad:
        raise AHLError(
            f"scorer {type(scorer).__name__}.task_buffers returned {bad}: each value must be a buffer of the scorer, "
            f"stacked over the {len(taskset)} tasks (T×...)"
        )
    return values


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="AHL", unit="epoch")


def _meta_train(
    scorer: ScorerModule,
    supervision: Supervision,
    features: list[torch.Tensor],
    labels: torch.Tensor,
    taskset: TaskSet,
    sampler: TaskSampler,
    options: AHLOptions,
    seed: int,
    estimator: GeneralizabilityEstimator | EstimatorFactory | None,
    bar: Any,
) -> dict[str, Any]:
    n_tasks = len(taskset)
    if estimator is None:
        raise InvalidOptionsError(
            "train_ahl needs an estimator to weight the tasks: pass estimator=, e.g. "
            "ahl_plugins.components.build_estimator's result, or use OSADDetector(ahl=True), which passes the registered one"
        )
    weigher: GeneralizabilityEstimator  # the estimator, or what the factory built for this task count
    if callable(getattr(estimator, "task_weights", None)):
        estimator_name, weigher = type(estimator).__name__, cast(GeneralizabilityEstimator, estimator)
    else:
        estimator_name, weigher = options.estimator_name, cast(EstimatorFactory, estimator)(n_tasks)
    needs_history = bool(getattr(weigher, "needs_history", True))
    learner = MetaLearner(
        scorer,
        supervision.loss,
        inner_steps=options.inner_steps,
        inner_lr=options.inner_lr,
        first_order=options.first_order,
        vectorize=_uses_vmap(options, features),
        inner_update=options.inner_update,
        support_weight=options.support_loss_weight,
        supervision=supervision,
    )
    if options.task_references == "support":
        learner.task_constants = _task_references(scorer, taskset)
    n_steps, outer_lr = options.outer_schedule(taskset.layout.n_seen)
    optimizer = torch.optim.Adam(learner.parameters.values(), lr=outer_lr, weight_decay=options.weight_decay)
    start = options.warm_epochs
    scheduler = step_decay(optimizer, options.lr_step, options.lr_gamma, start)
    rows, targets, error_weights = estimation_samples(taskset, labels, options.estimator_samples, seed)
    wants_reference = needs_history and accepts_reference(weigher)
    # parameter-free heads (DRA's patch distance) are the same for every base model and epoch: computed once
    fixed = fixed_heads(scorer, features, torch.as_tensor(rows)) if needs_history else {}
    score_history: list[torch.Tensor] = []  # per epoch N×T in [0, 1]
    prior = task_prior(taskset, options.task_prior)
    weights = prior.clone()
    records = []
    meta_seconds = scoring_seconds = estimator_seconds = 0.0
    scorer.train()
    for epoch in range(options.epochs - start):
        t0 = time.perf_counter()
        query_sum = torch.zeros(n_tasks)
        support_sum = torch.zeros(n_tasks)
        change_sum = torch.zeros(n_tasks)
        objective_sum = 0.0
        grad_norms = []
        step = None
        for _ in range(n_steps):
            step = learner.outer_step(optimizer, features, sampler.draw(), weights, options.grad_clip)
            query_sum += step.query_losses.float().cpu()
            support_sum += step.support_losses.float().cpu()
            change_sum += step.inner_change
            objective_sum += step.objective
            if step.grad_norm is not None:
                grad_norms.append(step.grad_norm)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        t1 = time.perf_counter()
        meta_seconds += t1 - t0
        used_weights = weights
        estimator_info: Any = None
        spread = None
        last_epoch = epoch == options.epochs - start - 1
        reference = None
        if needs_history:
            assert step is not None  # n_outer_steps >= 1: the loop above ran
            # θ_i' of the epoch's last outer step score every sample the tasks use
            scores = learner.score_base_models(step.adapted, features, rows, fixed=fixed)
            normalised = normalise_scores(scores, options.score_normalisation)
            score_history.append(normalised.T.contiguous())
            spread = float(normalised.std(dim=0).mean()) if n_tasks > 1 else 0.0
            if wants_reference and not last_epoch:
                unified = {k: v.detach().unsqueeze(0) for k, v in learner.parameters.items()}
                reference = normalise_scores(
                    learner.score_base_models(unified, features, rows, per_task=False, fixed=fixed),
                    options.score_normalisation,
                )[0]
        t2 = time.perf_counter()
        scoring_seconds += t2 - t1
        if not last_epoch:
            history_tensor = torch.stack(score_history) if score_history else torch.zeros(0, rows.numel(), n_tasks)
            extra = {"reference": reference} if wants_reference else {}
            estimated = check_weights(
                weigher.task_weights(history_tensor, targets, error_weights, **extra), n_tasks, estimator_name
            )
            weights = combine_weights(prior, estimated)
            estimator_info = getattr(weigher, "diagnostics", None)
        t3 = time.perf_counter()
        estimator_seconds += t3 - t2
        steps = n_steps
        records.append(
            {
                "epoch": start + epoch + 1,
                "weights": [float(w) for w in used_weights],
                "next_weights": None if last_epoch else [float(w) for w in weights],
                "objective": objective_sum / steps,
                "query_losses": (query_sum / steps).tolist(),
                "support_losses": (support_sum / steps).tolist(),
                "inner_change": (change_sum / steps).tolist(),
                "base_score_spread": spread,
                "grad_norm": float(np.mean(grad_norms)) if grad_norms else None,
                "lr": lr,
                "estimator": _jsonable(estimator_info),
                "seconds": {"meta": t1 - t0, "scoring": t2 - t1, "estimator": t3 - t2},
            }
        )
        if bar is not None:
            bar.set_postfix(objective=f"{objective_sum / steps:.4f}")
            bar.update(1)
    final = _adapted_mean(learner, features, sampler, weights) if options.final_model == "adapted_mean" else None
    return {
        "estimator": estimator_name,
        "final_model": {"kind": options.final_model, "relative_change": final},
        "vectorized": bool(learner.vectorized),
        "first_order": options.first_order,
        "inner_update": options.inner_update,
        "task_prior": [float(p) for p in prior],
        "estimation_samples": int(rows.numel()),
        "epochs": records,
        "timing": {
            "meta_seconds": meta_seconds,
            "scoring_seconds": scoring_seconds,
            "estimator_seconds": estimator_seconds,
        },
    }


def _adapted_mean(
    learner: MetaLearner, features: list[torch.Tensor], sampler: TaskSampler, weights: torch.Tensor
) -> float:
    """Replace θ_g by Σ_i w_i θ_i', the base models adapted from it on fresh support batches; returns the move.

    MAML meta-trains an initialisation to be adapted; this takes that step once more at the end, on every task's
    support data, and averages the adapted base models with the estimator's weights (normalised to sum to 1).
    """
    batch = sampler.draw()
    device = features[0].device
    _, _, adapted = learner.task_losses(
        gather(features, batch.support_rows),
        batch.support_labels.to(device),
        gather(features, batch.query_rows),
        batch.query_labels.to(device),
        learner.supervision.rows(batch.support_rows),
        learner.supervision.rows(batch.query_rows),
    )
    w = weights / weights.sum()
    moved = size = 0.0
    with torch.no_grad():
        for name, p in learner.parameters.items():
            value = adapted[name].detach()
            mean = (w.to(value.device, value.dtype).reshape(-1, *([1] * p.dim())) * value).sum(0)
            moved += float(((mean - p) ** 2).sum())
            size += float((p**2).sum())
            p.copy_(mean)
    return (moved / max(size, 1e-24)) ** 0.5


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)
