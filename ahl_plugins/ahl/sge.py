"""SGE's side of the trainer: which training samples judge the base models, how their scores are put on one
scale, the tasks' prior weights, and how an estimator's weights are checked and combined with the prior.

Kept apart from the meta-learning loop (``trainer``) so the estimator's inputs and outputs read in one place; the
estimators themselves are plugins (``builtin_plugins.estimators``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ahl_plugins.ahl.hadg import TaskSet
from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN
from ahl_plugins.errors import AHLError


def check_weights(weights: Any, n_tasks: int, who: str) -> torch.Tensor:
    w = torch.as_tensor(weights, dtype=torch.float32).detach().cpu().reshape(-1)
    if w.numel() != n_tasks or not torch.isfinite(w).all() or (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-4:
        raise AHLError(
            f"estimator {who} returned task weights {w.tolist()}; expected {n_tasks} non-negative weights summing to 1"
        )
    return w


def rank_scores(scores: torch.Tensor) -> torch.Tensor:
    """Per base model quantiles over the samples of one epoch: ``T×N`` -> ``[0, 1]`` (ties share a rank).

    Scores live on each scorer's own scale; SGE compares them with 0/1
    labels. Ranks make that comparison scale-free and robust: a single far
    outlier moves every other sample by at most one rank, where under
    min-max it squashed all of them towards 0 (seen anomalies at 0.39,
    normals at 0.24 on the ADBench embeddings).
    """
    n = scores.shape[1]
    if n < 2:
        return torch.full_like(scores, 0.5, dtype=torch.float32)
    order = scores.argsort(dim=1, stable=True)
    ranks = torch.empty_like(order, dtype=torch.float32)
    positions = torch.arange(n, dtype=torch.float32).expand_as(order).contiguous()
    ranks.scatter_(1, order, positions)
    # average the ranks of tied scores, so a constant model gets 0.5 everywhere
    for t in range(scores.shape[0]):
        values, inverse = torch.unique(scores[t], return_inverse=True)
        if values.numel() < n:
            total = torch.zeros(values.numel()).index_add_(0, inverse, ranks[t])
            count = torch.zeros(values.numel()).index_add_(0, inverse, torch.ones(n))
            ranks[t] = (total / count)[inverse]
    return ranks / (n - 1)


def normalise_scores(scores: torch.Tensor, method: str = "minmax") -> torch.Tensor:
    """Per base model over the training samples of one epoch: ``T×N`` -> ``[0, 1]``; ``method`` rank or minmax.

    Min-max (the paper preset's form) maps each model's lowest score to 0 and
    its highest to 1; a model whose scores are all equal gets 0.5 everywhere
    (it separates nothing). Rank: see :func:`rank_scores`.
    """
    if method == "rank":
        return rank_scores(scores)
    low = scores.min(dim=1, keepdim=True).values
    high = scores.max(dim=1, keepdim=True).values
    span = high - low
    flat = span <= 1e-12
    out = (scores - low) / torch.where(flat, torch.ones_like(span), span)
    return torch.where(flat, torch.full_like(out, 0.5), out).clamp(0.0, 1.0)


def _subsample(labels: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Positions to keep: all seen anomalies (up to ``cap``), the rest split evenly between normals and pseudo."""
    groups = [np.flatnonzero(labels == value) for value in (LABEL_SEEN, LABEL_NORMAL, LABEL_PSEUDO)]
    seen, others = groups[0], [g for g in groups[1:] if g.size]
    keep = [rng.choice(seen, min(seen.size, cap), replace=False)]
    budget = cap - keep[0].size
    for i, group in enumerate(sorted(others, key=len)):
        share = min(group.size, budget // (len(others) - i))
        keep.append(rng.choice(group, share, replace=False))
        budget -= share
    return np.sort(np.concatenate(keep))


def estimation_samples(
    taskset: TaskSet, labels: torch.Tensor, cap: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows SGE judges (samples the tasks use, at most ``cap``), their 0/1 targets, and the ``N×T`` error weights.

    Error weight of sample j for base model i: 0 on model i's support normals
    (what it trained on, excluded as in the paper's D \\ X_{n,i}); 1.0 on
    anomalies (seen or pseudo) outside model i's support set; 0.5 on
    everything else (other clusters' normals, the anomalies it trained on).
    """
    used: set[int] = set()
    support_sets = []
    for task in taskset:
        s_rows, _ = taskset.layout.rows(task, "support")
        q_rows, _ = taskset.layout.rows(task, "query")
        used.update(s_rows.tolist())
        used.update(q_rows.tolist())
        support_sets.append(s_rows)
    rows = np.array(sorted(used), dtype=np.int64)
    if cap is not None and rows.size > cap:
        rng = np.random.default_rng([int(seed), 0x5347_45])  # "SGE"
        rows = rows[_subsample(labels[torch.from_numpy(rows)].numpy(), cap, rng)]
    row_labels = labels[torch.from_numpy(rows)]
    anomalous = (row_labels != LABEL_NORMAL).numpy()
    weights = np.empty((rows.size, len(taskset)), dtype=np.float32)
    for i, s_rows in enumerate(support_sets):
        in_support = np.isin(rows, s_rows)
        weights[:, i] = np.where(anomalous & ~in_support, 1.0, 0.5)
        weights[in_support & ~anomalous, i] = 0.0
    return torch.from_numpy(rows), torch.from_numpy(anomalous.astype(np.int64)), torch.from_numpy(weights)


def task_prior(taskset: TaskSet, kind: str) -> torch.Tensor:
    """``(T,)`` prior task weights: 1/T (``uniform``), or proportional to each task's query (and support) normals.

    Under the paper's HADG, pair (a, b) judges base model a on cluster b, and
    every pair weighs 1/T: a cluster of 3% of the normals then carries a
    third of the query-normal weight (ELPV, NSL-KDD; ``docs/when_ahl_hurts.md``).
    ``query_size`` weighs each task by how many normals its query set holds,
    so each normal counts about the same in the objective. Under it a task
    that adapts on a 65-normal cluster and is judged on a 3,000-normal one
    still carries 41% of page_blocks' objective; ``pair_size`` weighs each
    task by support × query normals, so every (support, query) pair of
    normals counts the same.
    """
    n_tasks = len(taskset)
    if kind == "uniform":
        return torch.full((n_tasks,), 1.0 / n_tasks)
    sizes = torch.tensor([max(1, task.query_normals.size) for task in taskset], dtype=torch.float64)
    if kind == "pair_size":
        sizes = sizes * torch.tensor([max(1, task.support_normals.size) for task in taskset], dtype=torch.float64)
    return (sizes / sizes.sum()).float()


def combine_weights(prior: torch.Tensor, estimated: torch.Tensor) -> torch.Tensor:
    """Prior times the estimator's weights, renormalised (uniform estimator weights leave the prior)."""
    w = prior * estimated
    return w / w.sum() if float(w.sum()) > 0 else prior


def accepts_reference(estimator: Any) -> bool:
    import inspect

    try:
        return "reference" in inspect.signature(estimator.task_weights).parameters
    except (TypeError, ValueError):
        return False
