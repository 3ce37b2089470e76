"""Built-in plugin: generalizability estimators ``sge`` (the paper's BiLSTM) and ``uniform``.

Light module: torch and the implementation load only when an estimator is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ahl_plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from ahl_plugins.contracts import Register


class SGEOptions(BaseModel):
    """Options of the self-supervised generalizability estimator.

    ``window`` and ``seed`` are filled in by the AHL learner (from
    ``AHLOptions.history`` and the run's seed) unless given here.
    """

    model_config = ConfigDict(extra="forbid")

    window: int = Field(5, ge=1, description="K: epochs of scores the LSTM reads; uniform weights before K epochs")
    hidden: int | None = Field(None, ge=1, description="LSTM hidden size (default: T, the number of tasks)")
    layers: int = Field(2, ge=1, description="stacked bidirectional LSTM layers")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="dropout between LSTM layers while training (off when predicting)"
    )
    train_steps: int = Field(
        4,
        ge=0,
        description="Adam steps on the self-supervised MSE per epoch (the LSTM keeps training across epochs; 4 "
        "instead of the earlier 10 halves SGE's fixed cost, see docs/benchmarks/ahl_overhead.md)",
    )
    lr: float = Field(1e-2, gt=0, description="Adam learning rate of the LSTM")
    batch_size: int = Field(256, ge=1, description="(sample, window) pairs per LSTM training step")
    temperature: float = Field(
        1.0,
        gt=0,
        description="absolute: weights = softmax(-error / temperature) (the paper's, 1.0); spread: "
        "softmax(-(error - mean) / (temperature * spread)), spread = the errors' std over tasks, at least their "
        "sampling noise",
    )
    temperature_mode: Literal["spread", "absolute"] = Field(
        "spread", description="spread (scale-free, the default) | absolute (the paper: errors used as they are)"
    )
    relative_errors: bool = Field(
        True,
        description="judge each base model by its error minus the unified model's error on the same weighted "
        "samples (so excluding a different support cluster alone no longer changes the error)",
    )
    seed: int = Field(0, description="seed of the LSTM initialisation and of its minibatches")


def build_sge(n_tasks: int, options: SGEOptions | None = None) -> Any:
    from builtin_plugins.estimators.sge import SGEEstimator

    return SGEEstimator(n_tasks, options or SGEOptions())


def build_uniform(n_tasks: int, options: None = None) -> Any:
    from builtin_plugins.estimators.sge import UniformEstimator

    return UniformEstimator(n_tasks)


@hookimpl
def ahl_register_estimators(register: Register) -> None:
    register(
        "sge",
        build_sge,
        options=SGEOptions,
        description="self-supervised generalizability estimation: BiLSTM forecasts of each base model's scores",
    )
    register("uniform", build_uniform, description="equal weights 1/T for every task (the no-SGE ablation)")
