"""The host's own check of a scorer's output shapes, on the first batch of every fit and on every scoring batch.

The contract kit (``ahl plugins check``) tests a scorer in depth, but nothing
forces anyone to run it: a head of shape ``(B, 1)`` instead of ``(B,)``
broadcasts against the ``(B,)`` labels inside a loss, trains on nonsense and
reports AUCs. One cheap shape check where the scorer first meets real
features turns that into an error naming the scorer and the head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from ahl_plugins.errors import InvalidComponentError

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

PROBE_ROWS = 8


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def check_heads(scorer: ScorerModule, heads: Any, combined: Any, batch: int) -> None:
    """Raise :class:`InvalidComponentError` unless every head and ``combine(heads)`` has shape ``(batch,)``."""
    name = type(scorer).__name__
    fix = f"Fix the scorer's forward/combine; `ahl plugins check <plugin>` runs the full contract on {name}"
    if not isinstance(heads, Mapping) or not heads:
        raise InvalidComponentError(
            f"scorer {name} returned {_describe(heads)} for a batch of {batch}; it must return a non-empty dict of "
            f"head scores, each of shape ({batch},). {fix}"
        )
    for head, value in heads.items():
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (batch,):
            squeeze = (
                " (squeeze the trailing dimension)"
                if isinstance(value, torch.Tensor) and value.shape[-1:] == (1,)
                else ""
            )
            raise InvalidComponentError(
                f"scorer {name}: head {head!r} is {_describe(value)} for a batch of {batch}; expected shape "
                f"({batch},){squeeze}. A wrong shape broadcasts against the labels in the loss and trains on "
                f"nonsense. {fix}"
            )
    if not isinstance(combined, torch.Tensor) or tuple(combined.shape) != (batch,):
        raise InvalidComponentError(
            f"scorer {name}: combine(heads) returned {_describe(combined)} for a batch of {batch}; expected shape "
            f"({batch},). {fix}"
        )


def probe_heads(scorer: ScorerModule, features: Sequence[torch.Tensor]) -> None:
    """Run ``scorer`` once on the first rows of ``features`` (eval mode, no autograd) and check the shapes.

    Eval mode and ``no_grad`` leave parameters, buffers and every random
    generator as they were, so training afterwards is unchanged.
    """
    rows = min(PROBE_ROWS, int(features[0].shape[0]))
    batch = [t[:rows] for t in features]
    was_training = scorer.training
    scorer.eval()
    try:
        with torch.no_grad():
            heads = scorer(batch)
            combined = scorer.combine(heads) if isinstance(heads, Mapping) and heads else None
    finally:
        scorer.train(was_training)
    check_heads(scorer, heads, combined, rows)
