"""The AHL learner's options, with the paper's (and the authors' code's) defaults."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Ablation = Literal["none", "uniform", "random_tasks", "ensemble"]
QueryNormals = Literal["cluster", "other_clusters", "all"]


class AHLOptions(BaseModel):
    """Everything the AHL learner can be told; misspelt names are rejected.

    ``outer_steps_per_epoch``: the paper and the authors' code take one outer
    step per epoch (and lose the last one, defect 4). We take several: each
    outer step draws a fresh balanced support and query batch per task. The
    default, 5, is the number that keeps AHL's fit time within about three
    times the base loop's on the same features and epochs (see
    ``docs/benchmarks/ahl_overhead.md``); ``None`` means one outer step per
    base batch (``batches_per_epoch``), the same number of parameter updates
    as the base loop.
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
    random_halves_task: bool = Field(
        False, description="add the appendix's extra task: all normals split into random halves"
    )
    # CDL
    inner_steps: int = Field(3, ge=1, description="gradient steps each base model takes on its support batch")
    inner_lr: float = Field(2e-4, gt=0, description="learning rate of the inner (adaptation) steps")
    outer_lr: float = Field(2e-3, gt=0, description="Adam learning rate of the unified model")
    weight_decay: float = Field(1e-4, ge=0, description="Adam weight decay of the unified model")
    lr_step: int = Field(10, ge=1, description="epochs between learning-rate decays")
    lr_gamma: float = Field(0.1, gt=0, le=1, description="learning-rate decay factor")
    grad_clip: float | None = Field(1.0, gt=0, description="max gradient norm of an outer step (None: no clipping)")
    epochs: int = Field(30, ge=1, description="meta-training epochs")
    batch_size: int = Field(48, ge=2, description="samples per balanced support or query batch, per task")
    batches_per_epoch: int = Field(20, ge=1, description="balanced batches per epoch (the base loop's epoch length)")
    outer_steps_per_epoch: int | None = Field(
        5, ge=1, description="outer (meta) steps per epoch; None: one per batch, i.e. batches_per_epoch"
    )
    first_order: bool = Field(False, description="drop second-order terms of the meta-gradient (faster)")
    task_batching: Literal["auto", "vmap", "loop"] = Field(
        "auto",
        description="run the T tasks as one torch.func.vmap or as a loop; auto: vmap for vector features, loop for "
        "maps (measured faster on CPU: vmapped convolutions become grouped ones); vmap falls back to the loop when "
        "a scorer cannot be vmapped",
    )
    # SGE
    history: int = Field(5, ge=1, description="K: epochs of score history the estimator looks at")
    estimator: str = Field("sge", min_length=1, description="registered generalizability estimator")
    estimator_options: dict[str, Any] = Field(default_factory=dict, description="options of the estimator")
    estimator_samples: int | None = Field(
        512,
        ge=3,
        description="training samples the base models score each epoch for the estimator (all seen anomalies, the "
        "rest split between normals and pseudo anomalies; drawn once per run); None: every sample",
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

    @property
    def n_outer_steps(self) -> int:
        return self.outer_steps_per_epoch if self.outer_steps_per_epoch is not None else self.batches_per_epoch

    @property
    def estimator_name(self) -> str:
        return "uniform" if self.ablation == "uniform" else self.estimator
