"""Deep SAD's own tests: the ahl-plugins contract kit, and the model's defining properties.

Run after `pip install -e examples/ahl-plugin-deepsad` (the plugin is found
through its entry point, like any third-party plugin).
"""

from __future__ import annotations

import pytest
import torch

from ahl_plugins import FeatureSpec
from ahl_plugins.plugins import get_manager
from ahl_plugins.testing import check_component, parametrize_components


@parametrize_components("deepsad")
def test_contract(kind: str, name: str) -> None:
    check_component(kind, name)


def build_scorer(kind: str = "vector"):
    entry = get_manager().get("scorers", "deepsad")
    spec = FeatureSpec("vector", (6,)) if kind == "vector" else FeatureSpec("map", (4, 4))
    torch.manual_seed(0)
    return entry.build(spec), spec


def test_prepare_puts_the_centre_at_the_normals_mean_embedding() -> None:
    scorer, _ = build_scorer()
    normals = [torch.randn(32, 6, generator=torch.Generator().manual_seed(1))]
    scorer.prepare(normals, torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean = scorer.embed(normals).mean(dim=0)
    far = mean.abs() >= 0.1
    assert torch.allclose(scorer.center[far], mean[far])
    assert bool((scorer.center[~far].abs() == 0.1).all())
    assert "center" in dict(scorer.named_buffers())


def test_score_is_the_squared_distance_to_the_centre() -> None:
    scorer, _ = build_scorer("map")
    maps = [torch.rand(3, 4, 5, 5), torch.rand(3, 4, 2, 2)]
    scorer.prepare(maps, torch.Generator().manual_seed(0))
    x = [torch.rand(2, 4, 5, 5), torch.rand(2, 4, 2, 2)]
    with torch.no_grad():
        pooled = torch.cat([x[0].mean(dim=(2, 3)), x[1].mean(dim=(2, 3))], dim=1)
        expected = ((scorer.encoder(pooled) - scorer.center) ** 2).sum(dim=1)
        assert torch.allclose(scorer.combine(scorer(x)), expected)


def test_loss_matches_the_deep_sad_objective() -> None:
    entry = get_manager().get("losses", "deepsad")
    loss = entry.build(options={"eta": 2.0})
    distance = torch.tensor([0.5, 2.0, 4.0, 1.0])
    labels = torch.tensor([0, 0, 1, 2])
    expected = (0.5 + 2.0 + 2.0 / (4.0 + 1e-6) + 2.0 / (1.0 + 1e-6)) / 4
    assert float(loss({"distance": distance}, labels)) == pytest.approx(expected)


def test_unknown_option_is_rejected() -> None:
    from ahl_plugins.errors import InvalidOptionsError

    with pytest.raises(InvalidOptionsError, match="rep_dims"):
        get_manager().get("scorers", "deepsad").parse_options({"rep_dims": 8})
