"""Options of the base training loop: a pure pydantic model, cheap to import (the plugin manager checks model
bundles against it)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
