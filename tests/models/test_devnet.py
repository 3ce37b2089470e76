from __future__ import annotations

import pytest
import torch

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.errors import DataError
from builtin_plugins.devnet import DevNetOptions, build_scorer
from builtin_plugins.heads import topk_count, topk_mean


def test_map_head_shape_and_topk_pooling_by_hand():
    spec = FeatureSpec("map", (3,))
    scorer = build_scorer(spec)
    head = scorer.heads[0]
    with torch.no_grad():  # score = channel 0 exactly
        head.score.weight.zero_()
        head.score.weight[0, 0] = 1.0
        head.score.bias.zero_()
    x = torch.zeros(2, 3, 10, 10)
    x[0, 0] = torch.arange(100, dtype=torch.float32).reshape(10, 10) - 50  # |values| top 10: 50, 49, 49, ..., 45
    x[1, 0, 0, 0] = 8.0
    out = scorer([x])
    assert set(out) == {"score"} and out["score"].shape == (2,)
    expected0 = sorted((abs(v - 50) for v in range(100)), reverse=True)[:10]
    assert out["score"][0].item() == pytest.approx(sum(expected0) / 10)
    assert out["score"][1].item() == pytest.approx(8.0 / 10)
    assert torch.equal(scorer.combine(out), out["score"])


def test_topk_keeps_at_least_one_position():
    assert topk_count(49, 0.1) == 4
    assert topk_count(4, 0.1) == 1
    assert topk_mean(torch.tensor([[1.0, 5.0, 3.0]]), 0.5).item() == 5.0


def test_vector_mode_is_tabular_devnet():
    scorer = build_scorer(FeatureSpec("vector", (7,)), DevNetOptions(hidden=[20]))
    shapes = sorted(tuple(p.shape) for p in scorer.parameters())
    assert shapes == [(1,), (1, 20), (20,), (20, 7)]
    out = scorer([torch.randn(5, 7)])
    assert out["score"].shape == (5,)
    # linear output (no |.| as on maps): a negative bias gives negative scores
    with torch.no_grad():
        scorer.heads[0].out.bias.fill_(-100.0)
    assert (scorer([torch.randn(5, 7)])["score"] < 0).all()


def test_scales_are_averaged(map_features):
    spec = FeatureSpec("map", (8, 8))
    scorer = build_scorer(spec)
    feats = map_features()
    assert len(scorer.heads) == 1  # same width: one head serves both scales, as in the papers
    single = build_scorer(FeatureSpec("map", (8,)))
    single.load_state_dict(scorer.state_dict())
    expected = (single([feats[0]])["score"] + single([feats[1]])["score"]) / 2
    assert torch.allclose(scorer(feats)["score"], expected)


def test_scales_of_different_width_get_their_own_heads(map_features):
    scorer = build_scorer(FeatureSpec("map", (8, 4)))
    assert len(scorer.heads) == 2
    assert scorer(map_features(channels=(8, 4)))["score"].shape == (4,)


@pytest.mark.parametrize(
    "features, match",
    [
        ([torch.randn(2, 8, 3, 3)], "2 feature scale"),
        ([torch.randn(2, 8, 3, 3), torch.randn(2, 5, 3, 3)], "5 channels"),
        ([torch.randn(2, 8), torch.randn(2, 8)], "expected B×C×H×W"),
    ],
)
def test_mismatched_features_are_rejected(features, match):
    with pytest.raises(DataError, match=match):
        build_scorer(FeatureSpec("map", (8, 8)))(features)


def test_single_tensor_instead_of_list_is_rejected():
    with pytest.raises(DataError, match="wrap it"):
        build_scorer(FeatureSpec("vector", (3,)))(torch.randn(2, 3))
