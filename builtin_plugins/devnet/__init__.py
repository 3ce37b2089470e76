"""Built-in plugin: DevNet (scorer ``devnet`` and model ``devnet``).

Light module: the scorer (and torch) is imported only when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ahl_plugins.contracts import ModelSpec
from ahl_plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from ahl_plugins.contracts import FeatureSpec, Register


class DevNetOptions(BaseModel):
    """Options of the DevNet scorer."""

    model_config = ConfigDict(extra="forbid")

    topk_ratio: float = Field(0.1, gt=0, le=1, description="share of map positions pooled into the score (maps)")
    hidden: list[int] = Field(
        [100, 50],
        min_length=1,
        description="hidden layer widths of the MLP on vectors; [20] is the KDD'19 tabular DevNet",
    )


def build_scorer(spec: FeatureSpec, options: DevNetOptions | None = None) -> Any:
    from builtin_plugins.devnet.scorer import DevNetScorer

    return DevNetScorer(spec, options)


@hookimpl
def ahl_register_scorers(register: Register) -> None:
    register(
        "devnet",
        build_scorer,
        options=DevNetOptions,
        description="DevNet: 1x1 conv, |.|, top-10% mean on maps; 20-unit MLP on vectors",
    )


@hookimpl
def ahl_register_models(register: Register) -> None:
    register(
        "devnet",
        ModelSpec(
            scorer="devnet",
            loss="deviation",
            image_extractor="resnet18",
            vector_extractor="identity",
            description="DevNet (Pang et al. 2019/2021) trained with the deviation loss",
        ),
    )
