"""The AHL learner's options, with the paper's (and the authors' code's) defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Ablation = Literal["none", "uniform", "random_tasks", "ensemble"]
QueryNormals = Literal["cluster", "other_clusters", "all"]
InnerUpdate = Literal["sgd", "relative", "layerwise"]
TaskPrior = Literal["uniform", "query_size", "pair_size"]
FinalModel = Literal["unified", "adapted_mean"]
SingleAnomaly = Literal["both", "query", "query_normal_support"]

#: The paper's settings (with the release's defects fixed): what ``preset="paper"`` restores.
PAPER_AHL_OPTIONS: dict[str, Any] = {
    "query_normals": "cluster",
    "single_anomaly": "both",
    "m1_outer_steps": None,
    "guard": False,
    "task_prior": "uniform",
    "warm_start": 0.0,
    "task_references": "all",
    "support_loss_weight": 0.0,
    "final_model": "unified",
    "inner_update": "sgd",
    "inner_steps": 3,
    "inner_lr": 2e-4,
    "first_order": False,
    "outer_lr": 2e-3,
    "weight_decay": 1e-4,
    "outer_steps_per_epoch": 5,
    "task_batch_size": 48,
    "estimator_samples": 512,
    "score_normalisation": "minmax",
    "estimator_options": {"relative_errors": False, "temperature_mode": "absolute", "train_steps": 10},
}


class AHLOptions(BaseModel):
    """Everything the AHL learner can be told; misspelt names are rejected.

    The defaults are the configuration chosen on validation splits of training
    data (``docs/benchmarks/ahl_validation.md``); ``PAPER_AHL_OPTIONS`` holds
    the paper's values, which ``preset="paper"`` restores. Every difference is
    a row of ``docs/deviations.md``.

    Update budget: base and base+AHL get the same optimisation budget
    (Adam learning rate × updates per epoch, with the same decay), so the
    paired gain measures heterogeneity learning, not a different optimiser:
    the base loop takes 20 steps of 2e-4 per epoch, AHL 5 outer steps of
    8e-4. Each task's support and query batches hold ``task_batch_size``
    samples (default ``batch_size / T``), so one epoch of AHL reads half the
    samples of a base epoch, which keeps its cost near the base loop's on
    feature maps (where cost follows samples) as on vectors (where it
    follows steps).
    """

    model_config = ConfigDict(extra="forbid")

    # HADG
    n_clusters: int = Field(3, ge=2, description="k of the k-means on normal features; T = k(k-1) tasks")
    min_cluster_size: int = Field(
        5, ge=1, description="clusters with fewer normals are merged into the nearest cluster (with a warning)"
    )
    query_normals: QueryNormals = Field(
        "cluster",
        description="where a task's query normals come from: cluster (the paper: one other cluster) | "
        "other_clusters (every normal outside the support cluster) | all (every normal); see "
        "docs/when_ahl_hurts.md for when the paper's choice hurts",
    )
    task_prior: TaskPrior = Field(
        "query_size",
        description="prior weight of each task before SGE: uniform (the paper: 1/T) | query_size (proportional to "
        "the task's query normals, so a small cluster no longer carries 1/T of the objective) | pair_size "
        "(proportional to support normals × query normals, so a task adapting on a tiny cluster weighs little too)",
    )
    task_references: Literal["all", "support"] = Field(
        "all",
        description="reference normals of a scorer that keeps some (DRA's bank): all (every base model uses the "
        "unified model's) | support (base model i only its task's support normals, so its query normals are judged "
        "against references they were not drawn from; needs the scorer's task_buffers)",
    )
    single_anomaly: SingleAnomaly = Field(
        "query_normal_support",
        description="HADG's tasks when M = 1 (no effect at M >= 2): both (the paper: the one anomaly in every "
        "support and query set, so the inner step fits it and the unified model never has to: it collapses; "
        "docs/when_ahl_hurts.md) | query (the anomaly in the query sets only, as the paper's half-to-support rule "
        "rounds one down to none) | query_normal_support (the anomaly and the pseudo anomalies in the query sets "
        "only: support sets hold normals, so adaptation is to a normal mode and every anomaly is judged unseen)",
    )
    random_halves_task: bool = Field(
        False, description="add the appendix's extra task: all normals split into random halves"
    )
    # CDL
    inner_update: InnerUpdate = Field(
        "relative",
        description="inner (adaptation) step: sgd (the paper: theta - inner_lr * grad) | relative (the step moves "
        "the heads by inner_lr times their norm along the gradient, whatever the gradient's scale) | layerwise (the "
        "same per parameter tensor: each tensor moves by inner_lr times its own norm)",
    )
    support_loss_weight: float = Field(
        0.0,
        ge=0.0,
        description="weight of the unified model's own support losses (before adaptation) beside the query losses "
        "in the meta-objective (0: the paper, query losses only)",
    )
    inner_steps: int = Field(1, ge=1, description="gradient steps each base model takes on its support batch")
    inner_lr: float = Field(
        0.05, gt=0, description="inner step size: a learning rate (sgd) or a share of the heads' norm (relative)"
    )
    outer_lr: float = Field(
        8e-4,
        gt=0,
        description="Adam learning rate of the unified model (default: the base loop's 2e-4 × its 20 steps per "
        "epoch / 5 outer steps, the same update budget)",
    )
    weight_decay: float = Field(1e-5, ge=0, description="Adam weight decay of the unified model")
    lr_step: int = Field(10, ge=1, description="epochs between learning-rate decays")
    lr_gamma: float = Field(0.1, gt=0, le=1, description="learning-rate decay factor")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm of an outer step (None: no clipping)")
    epochs: int = Field(30, ge=1, description="meta-training epochs")
    batch_size: int = Field(48, ge=2, description="samples of one base batch (sets task_batch_size by default)")
    task_batch_size: int | None = Field(
        None, ge=2, description="samples per balanced support or query batch, per task; None: batch_size / T (>= 6)"
    )
    batches_per_epoch: int = Field(20, ge=1, description="balanced batches per epoch (the base loop's epoch length)")
    outer_steps_per_epoch: int | None = Field(
        5, ge=1, description="outer (meta) steps per epoch; None: one per base batch, i.e. batches_per_epoch"
    )
    m1_outer_steps: int | None = Field(
        20,
        ge=1,
        description="outer steps per epoch when M = 1, at outer_lr × outer_steps_per_epoch / m1_outer_steps (the "
        "same update budget in smaller steps; measured to close AHL's M = 1 gap, docs/deviations.md); None: "
        "outer_steps_per_epoch at every M",
    )
    first_order: bool = Field(True, description="drop second-order terms of the meta-gradient (faster)")
    task_batching: Literal["auto", "vmap", "loop"] = Field(
        "auto",
        description="run the T tasks as one torch.func.vmap or as a loop; auto: vmap for vector features, loop for "
        "maps (measured faster on CPU: vmapped convolutions become grouped ones); vmap falls back to the loop when "
        "a scorer cannot be vmapped",
    )
    # SGE
    history: int = Field(5, ge=1, description="K: epochs of score history the estimator looks at")
    estimator: str = Field("sge", min_length=1, description="registered generalizability estimator")
    estimator_options: dict[str, Any] = Field(
        default_factory=dict, description="options of the estimator (see `ahl plugins list --all`)"
    )
    score_normalisation: Literal["rank", "minmax"] = Field(
        "rank",
        description="how each base model's scores are put on [0, 1] before SGE compares them with 0/1 labels: rank "
        "(quantiles over the judged samples; robust) | minmax (the earlier form: one outlier squashes the rest)",
    )
    estimator_samples: int | None = Field(
        128,
        ge=3,
        description="training samples the base models score each epoch for the estimator (all seen anomalies, the "
        "rest split between normals and pseudo anomalies; drawn once per run); None: every sample",
    )
    warm_start: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of the epochs trained by the base loop before meta-training starts from its model (0: the "
        "paper, meta-training from scratch); the base epochs take the same lr × steps, and the learning-rate decay "
        "counts every epoch, so the update budget does not change",
    )
    final_model: FinalModel = Field(
        "unified",
        description="the model that scores after meta-training: unified (θ_g, the paper) | adapted_mean (the "
        "estimator-weighted mean of the T base models adapted from the final θ_g on fresh support batches: MAML's "
        "'adapt, then predict', with every task's support data)",
    )
    # the guard (ahl_plugins/ahl/guard.py)
    guard: bool = Field(
        True,
        description="hold out a share of the training normals and pseudo anomalies, train AHL and the base loop on "
        "the rest, and let the base model score when AHL's held-out AUC is lower by more than guard_tolerance "
        "(the fit records which it chose and why); False: AHL on all the data, no check",
    )
    guard_holdout: float = Field(
        0.2, gt=0.0, lt=0.5, description="share of the normals and of each pseudo pool the guard holds out"
    )
    guard_tolerance: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="how far AHL's held-out AUC may fall below the base loop's before it falls back (0: AHL must do "
        "at least as well as the base loop on the held-out part; chosen on validation, "
        "docs/benchmarks/guard_tolerance.md)",
    )
    guard_refit: bool = Field(
        True,
        description="after the held-out check, train the chosen model again on all the training data (AHL or the "
        "base loop, same seed: the fit then equals an unguarded one); False: keep the model trained without the "
        "held-out part (one fit cheaper, but 20% less data)",
    )
    # ablations
    ablation: Ablation = Field(
        "none",
        description="none | uniform (no SGE: equal weights) | random_tasks (no HADG: random normal groups) "
        "| ensemble (one base model per task, scores averaged)",
    )

    @model_validator(mode="after")
    def _ablation_estimator(self) -> AHLOptions:
        if self.ablation == "uniform" and self.estimator not in ("sge", "uniform"):
            raise ValueError(
                f"ablation='uniform' replaces the estimator by 'uniform', but estimator={self.estimator!r} was "
                "also given; drop one of the two"
            )
        return self

    def task_batch(self, n_tasks: int) -> int:
        """Samples per task batch: ``task_batch_size``, else the base batch shared among the T tasks."""
        if self.task_batch_size is not None:
            return self.task_batch_size
        return max(6, -(-self.batch_size // max(1, n_tasks)))

    @property
    def warm_epochs(self) -> int:
        """Epochs of the base loop before meta-training (``warm_start`` × ``epochs``, leaving at least one)."""
        return min(self.epochs - 1, round(self.warm_start * self.epochs))

    @property
    def n_outer_steps(self) -> int:
        return self.outer_steps_per_epoch if self.outer_steps_per_epoch is not None else self.batches_per_epoch

    def outer_schedule(self, n_seen: int) -> tuple[int, float]:
        """``(outer steps per epoch, outer lr)`` for ``n_seen`` labelled anomalies (``m1_outer_steps`` at M = 1)."""
        if n_seen == 1 and self.m1_outer_steps is not None:
            return self.m1_outer_steps, self.outer_lr * self.n_outer_steps / self.m1_outer_steps
        return self.n_outer_steps, self.outer_lr

    @property
    def estimator_name(self) -> str:
        return "uniform" if self.ablation == "uniform" else self.estimator
