from __future__ import annotations

import numpy as np
import torch

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.features.store import Features
from ahl_plugins.training.scoring import head_scores, score_features
from builtin_plugins.dra import build_scorer


def dra_scorer():
    scorer = build_scorer(FeatureSpec("vector", (4,)))
    scorer.prepare([torch.randn(10, 4)], torch.Generator().manual_seed(0))
    return scorer


def test_scores_match_forward_and_do_not_depend_on_batch_size():
    scorer = dra_scorer()
    x = Features.of([torch.randn(11, 4)])
    with torch.no_grad():
        direct = scorer.combine(scorer(x.as_list())).double().numpy()
    for batch_size in (1, 4, 256):
        assert np.allclose(score_features(scorer, x, batch_size=batch_size), direct, atol=1e-6)
    heads = head_scores(scorer, x.as_list(), batch_size=3)
    assert tuple(heads) == scorer.head_names
    assert all(v.shape == (11,) and v.dtype == np.float64 for v in heads.values())
    combined = scorer.combine({name: torch.from_numpy(value) for name, value in heads.items()}).numpy()
    assert np.allclose(combined, direct, atol=1e-6)


def test_scoring_runs_in_eval_mode_and_restores_the_mode():
    scorer = dra_scorer().train()
    seen_modes = []
    scorer.register_forward_pre_hook(lambda module, args: seen_modes.append(module.training))
    score_features(scorer, [torch.randn(3, 4)])
    assert seen_modes == [False] and scorer.training


def test_no_autograd_graph_and_empty_input():
    scorer = dra_scorer()
    out = score_features(scorer, [torch.randn(2, 4)])
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    empty = score_features(scorer, [torch.zeros(0, 4)])
    assert empty.shape == (0,)
    assert all(v.shape == (0,) for v in head_scores(scorer, [torch.zeros(0, 4)]).values())
