"""The AHL learner runs scorers only through torch.func: check that contract for DevNet and DRA."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from ahl_plugins.contracts import FeatureSpec
from ahl_plugins.seeding import seeded
from builtin_plugins.devnet import build_scorer as build_devnet
from builtin_plugins.dra import build_loss as build_dra_loss
from builtin_plugins.dra import build_scorer as build_dra
from builtin_plugins.losses import build_deviation_loss

CASES = {
    "devnet-map": (build_devnet, build_deviation_loss, FeatureSpec("map", (6, 6))),
    "devnet-vector": (build_devnet, build_deviation_loss, FeatureSpec("vector", (5,))),
    "dra-map": (build_dra, build_dra_loss, FeatureSpec("map", (6, 6))),
    "dra-vector": (build_dra, build_dra_loss, FeatureSpec("vector", (5,))),
}


def features_for(spec: FeatureSpec, batch: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if spec.kind == "map":
        return [
            torch.randn(batch, spec.channels[0], 5, 5, generator=g),
            torch.randn(batch, spec.channels[1], 3, 3, generator=g),
        ]
    return [torch.randn(batch, spec.channels[0], generator=g)]


def build(case: str, seed: int, prepare_seed: int = 0):
    factory, _, spec = CASES[case]
    with seeded(seed):
        scorer = factory(spec)
    scorer.prepare(features_for(spec, 8, 100), torch.Generator().manual_seed(prepare_seed))
    return scorer.eval()


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


@pytest.mark.parametrize("case", sorted(CASES))
def test_functional_call_with_swapped_state_matches_a_loaded_module(case):
    a, b = build(case, seed=0), build(case, seed=1, prepare_seed=1)
    spec = CASES[case][2]
    x = features_for(spec, 4, 3)
    own = a(x)
    swapped = functional_call(a, state(b), (x,))
    direct = b(x)
    for name in a.head_names:
        assert torch.allclose(swapped[name], direct[name], atol=1e-6)
        if name != "distance":  # DRA's distance head has no parameters and both banks hold the same 8 normals
            assert not torch.allclose(swapped[name], own[name])
    # the module itself is untouched
    for name, value in a(x).items():
        assert torch.equal(value, own[name])


@pytest.mark.parametrize("case", sorted(CASES))
def test_vmap_over_stacked_parameter_sets(case):
    models = [build(case, seed=s, prepare_seed=s) for s in range(3)]
    params, buffers = stack_module_state(models)
    spec = CASES[case][2]
    x = features_for(spec, 4, 5)

    def run(p, b):
        return functional_call(models[0], {**p, **b}, (x,))

    out = vmap(run)(params, buffers)
    for i, model in enumerate(models):
        expected = model(x)
        for name in model.head_names:
            assert out[name].shape == (3, 4)
            assert torch.allclose(out[name][i], expected[name], atol=1e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_of_loss_through_functional_call(case):
    _, loss_factory, spec = CASES[case]
    scorer = build(case, seed=0).train()
    loss = loss_factory()
    x = features_for(spec, 6, 9)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    params = {k: v.detach() for k, v in scorer.named_parameters()}
    buffers = dict(scorer.named_buffers())

    def objective(p):
        return loss(functional_call(scorer, {**p, **buffers}, (x,)), labels)

    grads = grad(objective)(params)
    assert set(grads) == set(params)
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())
    # one adapted step changes the functional output but not the module
    adapted = {k: params[k] - 0.1 * grads[k] for k in params}
    before = scorer(x)
    after = functional_call(scorer, {**adapted, **buffers}, (x,))
    assert any(not torch.allclose(after[n], before[n]) for n in scorer.head_names)
    assert objective(adapted) < objective(params)
