"""Built-in plugin: the deviation loss (registered as ``deviation``).

Light module: the implementation (and torch) is imported only when a loss is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ahl_plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from ahl_plugins.contracts import Register


class DeviationReferenceOptions(BaseModel):
    """What every deviation-style loss needs: the margin and its fixed reference scores."""

    model_config = ConfigDict(extra="forbid")

    margin: float = Field(5.0, gt=0, description="how many reference standard deviations anomalies must exceed")
    n_references: int = Field(5000, ge=2, description="reference scores drawn from N(0, 1)")
    reference_seed: int = Field(0, description="seed of the one-time draw of the reference scores")


class DeviationLossOptions(DeviationReferenceOptions):
    """Options of the deviation loss."""

    heads: list[str] | None = Field(None, description="head scores to train (default: every head, summed)")


def build_deviation_loss(options: DeviationLossOptions | None = None) -> Any:
    from builtin_plugins.deviation import DeviationLoss

    options = options or DeviationLossOptions()
    return DeviationLoss(options.margin, options.n_references, options.reference_seed, options.heads)


@hookimpl
def ahl_register_losses(register: Register) -> None:
    register(
        "deviation",
        build_deviation_loss,
        options=DeviationLossOptions,
        description="DevNet deviation loss: normals to the N(0,1) reference mean, anomalies beyond a margin",
    )
