"""The last step of every fit, base or AHL: let the scorer calibrate itself on the training normals.

A scorer may define ``calibrate(normal_features)`` (optional in the Scorer
contract): it sees the trained heads' scores of the training normals and
sets how ``combine`` weighs them (DRA puts its four heads on one scale).
No labels and no test data are involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule


def calibrate_scorer(scorer: ScorerModule, normal_features: Sequence[torch.Tensor]) -> None:
    """Call ``scorer.calibrate`` in eval mode without autograd, when the scorer has one."""
    calibrate = getattr(scorer, "calibrate", None)
    if not callable(calibrate):
        return
    was_training = scorer.training
    scorer.eval()
    try:
        with torch.no_grad():
            calibrate(list(normal_features))
    finally:
        scorer.train(was_training)
