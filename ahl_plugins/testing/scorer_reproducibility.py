"""Scorer checks that make results reproducible: state kept where functional_call and saving see it, scores
independent of the batch, and the same scorer from the same seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ahl_plugins.contracts import ComponentEntry
from ahl_plugins.seeding import seeded
from ahl_plugins.testing.common import (
    ATOL,
    N_PREPARE_NORMALS,
    RTOL,
    Checker,
    feature_spec,
    hidden_tensors,
    make_generator,
    max_diff,
    synthetic_features,
)

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule


def forward_seeded(scorer: ScorerModule, features: Sequence[torch.Tensor], seed: int, device: torch.device) -> Any:
    with seeded(seed, device):
        return scorer(list(features))


def check_state(checker: Checker, scorer: ScorerModule, kind: str) -> None:
    hidden = hidden_tensors(scorer)
    if hidden:
        raise checker.fail(
            "scorer.state",
            f"the scorer keeps tensors outside its parameters and buffers: {hidden}; functional_call cannot swap "
            "them and save/load would lose them. Use nn.Parameter or self.register_buffer(name, tensor)",
            kind,
        )
    checker.ok("scorer.state", kind)


def check_batch_independence(
    checker: Checker, scorer: ScorerModule, features: Sequence[torch.Tensor], seed: int, device: torch.device, kind: str
) -> None:
    scorer.eval()
    try:
        with torch.no_grad(), checker.guard("scorer.batch-independent", "scoring in eval mode", kind):
            full = scorer.combine(forward_seeded(scorer, features, seed, device))
            for i in (0, features[0].shape[0] - 1):
                alone = scorer.combine(forward_seeded(scorer, [f[i : i + 1] for f in features], seed, device))
                if tuple(alone.shape) != (1,):
                    raise checker.fail(
                        "scorer.batch-independent",
                        f"scoring one sample gave shape {tuple(alone.shape)}; expected (1,)",
                        kind,
                    )
                if not torch.allclose(alone[0], full[i], rtol=RTOL, atol=ATOL):
                    raise checker.fail(
                        "scorer.batch-independent",
                        f"in eval mode sample {i} scores {float(full[i]):.6g} within the batch but "
                        f"{float(alone[0]):.6g} alone; scores must not depend on the other samples "
                        "(batch statistics in eval mode? call .eval() on BatchNorm, avoid batch-wise normalisation)",
                        kind,
                    )
    finally:
        scorer.train()
    checker.ok("scorer.batch-independent", kind)


def check_determinism(
    checker: Checker,
    entry: ComponentEntry,
    options: Any,
    kind: str,
    features: Sequence[torch.Tensor],
    seed: int,
    device: torch.device,
) -> None:
    spec = feature_spec(kind)
    normals = synthetic_features(
        spec,
        torch.zeros(N_PREPARE_NORMALS, dtype=torch.long),
        make_generator(seed + 1, torch.device("cpu")),
        device=device,
    )

    def run(global_seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        with seeded(seed, device):
            scorer = entry.build(spec, options=options).to(device)
        initial = {k: v.detach().clone() for k, v in scorer.state_dict().items()}
        with seeded(global_seed, device):  # a different global RNG state must not matter to prepare
            scorer.prepare(normals, make_generator(seed, device))
        scorer.eval()
        with torch.no_grad():
            return initial, scorer.combine(forward_seeded(scorer, features, seed, device))

    with checker.guard("scorer.determinism", "building and preparing the scorer twice", kind):
        init_a, scores_a = run(1)
        init_b, scores_b = run(2)
    differing = [k for k in init_a if not torch.equal(init_a[k], init_b[k])]
    if differing:
        raise checker.fail(
            "scorer.determinism",
            f"two builds under torch.manual_seed({seed}) gave different initial state {differing}; draw initial "
            "weights from torch's (seeded) global RNG or from a generator seeded by the options",
            kind,
        )
    if not torch.allclose(scores_a, scores_b, rtol=1e-5, atol=1e-6):
        raise checker.fail(
            "scorer.determinism",
            "prepare() with equally seeded generators gave different scores (max |diff| "
            f"{max_diff(scores_a, scores_b):.3g}) when the global RNG differed; draw randomness in prepare() "
            "only from the generator it receives",
            kind,
        )
    checker.ok("scorer.determinism", kind)
