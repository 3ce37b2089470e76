"""The AHL guard: keep AHL's unified model only where held-out training evidence says it generalises.

Wrapping a model with AHL should never make it worse. The guard holds out a
share of the training normals and of every pseudo-anomaly pool (never the
labelled anomalies, which are too few), trains AHL and the base loop on the
rest with the same update budget (the base loop's lr is AHL's
``outer_lr × outer steps / batches per epoch``, as in a warm start) and the
same initial heads, and scores the held-out part with both. The evidence is
the AUC-ROC of held-out pseudo anomalies against held-out normals: samples
neither model trained on, drawn from training data only. If AHL's evidence
falls more than ``guard_tolerance`` below the base loop's, the base model is
the one that scores. With ``guard_refit`` (default) the chosen model is then
trained again on all the training data with the same seed and initial heads,
so a guarded fit scores exactly as the unguarded AHL fit, or the base loop's
fit, would: the held-out part only decides. The choice, the evidence and the reason go into the
history (``history["guard"]``), and from there into the detector's
``fit_info_`` and ``ahl compare``'s results.

With ``guard=False`` (and under ``preset="paper"``) AHL trains on all the
data as before.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ahl_plugins.ahl.options import AHLOptions
from ahl_plugins.ahl.trainer import EstimatorFactory, base_loop_options, train_ahl
from ahl_plugins.contracts import GeneralizabilityEstimator, Loss
from ahl_plugins.features.store import Features
from ahl_plugins.training.base import train_base
from ahl_plugins.training.data import TrainingData
from ahl_plugins.training.options import TrainOptions
from ahl_plugins.training.scoring import score_features

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

logger = logging.getLogger(__name__)

#: fewest held-out normals and held-out pseudo anomalies whose AUC the guard trusts
MIN_HELD_NORMALS = 10
MIN_HELD_PSEUDO = 10


def auc(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
    """AUC-ROC of anomalies against normals."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(normal_scores.size), np.ones(anomaly_scores.size)]
    return float(roc_auc_score(labels, np.concatenate([normal_scores, anomaly_scores])))


def holdout_split(data: TrainingData, share: float, seed: int) -> tuple[TrainingData, Features, Features] | str:
    """``(training part, held-out normals, held-out pseudo anomalies)``, or why the guard cannot run.

    The same ``share`` of the normals and of every pseudo pool is held out (seeded); the labelled anomalies
    all stay in the training part.
    """
    rng = np.random.default_rng([int(seed), 0x4755_4152])  # "GUAR"
    n = len(data.normals)
    n_held = round(share * n)
    if n_held < MIN_HELD_NORMALS:
        return f"too few normals to hold out {share:.0%} ({n_held} < {MIN_HELD_NORMALS})"
    perm = torch.from_numpy(rng.permutation(n).astype(np.int64))
    held_normals, kept_normals = data.normals[perm[:n_held]], data.normals[perm[n_held:]]
    kept_pools: dict[str, Features] = {}
    kept_masks: dict[str, torch.Tensor] = {}
    held_pools: list[Features] = []
    for name in sorted(data.pseudo):
        pool = data.pseudo[name]
        k = round(share * len(pool))
        order = torch.from_numpy(rng.permutation(len(pool)).astype(np.int64))
        if k:
            held_pools.append(pool[order[:k]])
        kept_pools[name] = pool[order[k:]]
        if name in data.pseudo_masks:  # masks stay with their pseudo anomalies
            kept_masks[name] = data.pseudo_masks[name][order[k:].to(data.pseudo_masks[name].device)]
    n_pseudo = sum(len(p) for p in held_pools)
    if n_pseudo < MIN_HELD_PSEUDO:
        return f"too few pseudo anomalies to hold out {share:.0%} ({n_pseudo} < {MIN_HELD_PSEUDO})"
    kept = TrainingData(kept_normals, data.seen, kept_pools, data.seen_types, data.seen_masks, kept_masks)
    return kept, held_normals, Features.cat(held_pools)


def base_options(options: AHLOptions) -> TrainOptions:
    """The base loop at AHL's update budget (``outer_lr × outer steps / batches per epoch``, same decay)."""
    return base_loop_options(options, options.epochs)


def evidence(scorer: ScorerModule, normals: Features, pseudo: Features, device: torch.device | str) -> float:
    """AUC-ROC of the held-out pseudo anomalies against the held-out normals under ``scorer``."""
    return auc(
        score_features(scorer, normals, device=device),
        score_features(scorer, pseudo, device=device),
    )


def decide(ahl_evidence: float, base_evidence: float, tolerance: float) -> tuple[str, str]:
    """``("ahl" | "base", why)``: the base model only when AHL's evidence is below it by more than ``tolerance``."""
    gap = ahl_evidence - base_evidence
    if gap < -tolerance:
        return "base", (
            f"AHL's held-out AUC {ahl_evidence:.3f} is {-gap:.3f} below the base loop's {base_evidence:.3f} "
            f"(tolerance {tolerance})"
        )
    return "ahl", (
        f"AHL's held-out AUC {ahl_evidence:.3f} against the base loop's {base_evidence:.3f} "
        f"(within tolerance {tolerance} or above)"
    )


def train_ahl_guarded(
    scorer: ScorerModule,
    loss: Loss,
    data: TrainingData,
    options: AHLOptions,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    progress: bool = False,
    estimator: GeneralizabilityEstimator | EstimatorFactory | None = None,
) -> tuple[ScorerModule, dict[str, Any]]:
    """:func:`train_ahl` behind the guard (module docstring); returns (the chosen scorer, AHL's history).

    ``history["guard"]`` records ``enabled``, ``chosen`` (``ahl`` or ``base``), ``reason``, the held-out
    ``evidence`` of both models and the held-out counts; with the base model chosen, ``base_epochs`` holds
    its training records.
    """
    if not options.guard:
        trained, history = train_ahl(
            scorer, loss, data, options, seed=seed, device=device, progress=progress, estimator=estimator
        )
        history["guard"] = {"enabled": False, "chosen": "ahl", "reason": "guard off (guard=False)"}
        return trained, history
    split = holdout_split(data, options.guard_holdout, seed)
    if isinstance(split, str):
        trained, history = train_ahl(
            scorer, loss, data, options, seed=seed, device=device, progress=progress, estimator=estimator
        )
        history["guard"] = {"enabled": True, "chosen": "ahl", "reason": f"guard skipped: {split}"}
        logger.info("AHL guard skipped: %s", split)
        return trained, history
    kept, held_normals, held_pseudo = split
    initial = copy.deepcopy(scorer)  # the same initial heads for every fit
    base_scorer = copy.deepcopy(scorer)
    trained, history = train_ahl(
        scorer, loss, kept, options, seed=seed, device=device, progress=progress, estimator=estimator
    )
    base_records = train_base(base_scorer, loss, kept, base_options(options), seed=seed, device=device)
    scores = {
        "ahl": evidence(trained, held_normals, held_pseudo, device),
        "base": evidence(base_scorer, held_normals, held_pseudo, device),
    }
    chosen, reason = decide(scores["ahl"], scores["base"], options.guard_tolerance)
    record: dict[str, Any] = {
        "enabled": True,
        "chosen": chosen,
        "reason": reason,
        "evidence": scores,
        "metric": "auc_roc of held-out pseudo anomalies against held-out normals",
        "held_out": {"normals": len(held_normals), "pseudo": len(held_pseudo), "share": options.guard_holdout},
        "tolerance": options.guard_tolerance,
        "refit": options.guard_refit,
    }
    logger.info("AHL guard: %s (%s)", chosen, reason)
    if options.guard_refit:  # the chosen model again, on all the data
        if chosen == "ahl":
            trained, history = train_ahl(
                initial, loss, data, options, seed=seed, device=device, progress=progress, estimator=estimator
            )
        else:
            base_scorer = initial
            base_records = train_base(base_scorer, loss, data, base_options(options), seed=seed, device=device)
    history["guard"] = record
    if chosen == "base":
        record["base_epochs"] = base_records
        return base_scorer.eval(), history
    return trained, history


def guard_summary(history: Mapping[str, Any] | Any) -> dict[str, Any] | None:
    """The guard's record without the base model's epochs (for ``fit_info_`` and result tables)."""
    if not isinstance(history, Mapping) or not isinstance(history.get("guard"), Mapping):
        return None
    return {k: v for k, v in history["guard"].items() if k != "base_epochs"}
