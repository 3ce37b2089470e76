"""The meta-gradient of one outer step equals an explicit unrolled computation."""

from __future__ import annotations

import pytest
import torch
from ahl_testkit import ItemScorer, VectorScorer, deviation_loss
from torch import nn

from ahl_plugins.ahl.cdl import MetaLearner, TaskBatch, gather
from ahl_plugins.contracts import FeatureSpec


class LinearScorer(nn.Module):
    """score = x·w + b: small enough to unroll MAML by hand."""

    head_names = ("score",)

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.linspace(-0.5, 0.5, dim))
        self.b = nn.Parameter(torch.tensor(0.1))

    def forward(self, features):
        return {"score": features[0] @ self.w + self.b}

    def combine(self, heads):
        return heads["score"]


def smooth_loss(heads, labels):
    """Squared-error loss with a non-linear link, so the Hessian term is not zero."""
    s = heads["score"]
    y = (labels != 0).to(s.dtype) * 3.0
    return (torch.tanh(s) * 2.0 - y).pow(2).mean() + 0.1 * s.pow(4).mean()


def _batches(n_tasks=3, batch=6, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    sx = torch.randn(n_tasks, batch, dim, generator=g)
    qx = torch.randn(n_tasks, batch, dim, generator=g)
    sy = torch.randint(0, 3, (n_tasks, batch), generator=g)
    qy = torch.randint(0, 3, (n_tasks, batch), generator=g)
    return sx, sy, qx, qy


def _unrolled_gradient(w0, b0, sx, sy, qx, qy, weights, steps, lr, first_order):
    """MAML by hand: θ' = θ − α ∇L_s(θ) repeated, objective Σ w_t L_q(θ_t'), plain autograd."""
    w = w0.clone().requires_grad_()
    b = b0.clone().requires_grad_()
    total = 0.0
    for t in range(sx.shape[0]):
        wt, bt = w, b
        for _ in range(steps):
            inner = smooth_loss({"score": sx[t] @ wt + bt}, sy[t])
            gw, gb = torch.autograd.grad(inner, (wt, bt), create_graph=not first_order)
            wt, bt = wt - lr * gw, bt - lr * gb
        total = total + weights[t] * smooth_loss({"score": qx[t] @ wt + bt}, qy[t])
    return torch.autograd.grad(total, (w, b))


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("vectorize", [True, False])
def test_meta_gradient_matches_unrolled_maml(first_order, vectorize):
    torch.manual_seed(0)
    scorer = LinearScorer(4)
    sx, sy, qx, qy = _batches()
    weights = torch.tensor([0.5, 0.3, 0.2])
    learner = MetaLearner(
        scorer, smooth_loss, inner_steps=3, inner_lr=0.3, first_order=first_order, vectorize=vectorize
    )
    query, _, _ = learner.task_losses([sx], sy, [qx], qy)
    got = torch.autograd.grad((weights * query).sum(), (scorer.w, scorer.b))
    want = _unrolled_gradient(scorer.w.detach(), scorer.b.detach(), sx, sy, qx, qy, weights, 3, 0.3, first_order)
    for g, h in zip(got, want, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-5, atol=1e-6)
    assert learner.vectorized is vectorize


def test_second_order_terms_matter_here():
    """Guards the test above: first- and second-order gradients must differ on this problem."""
    scorer = LinearScorer(4)
    sx, sy, qx, qy = _batches()
    weights = torch.full((3,), 1 / 3)
    second = _unrolled_gradient(scorer.w.detach(), scorer.b.detach(), sx, sy, qx, qy, weights, 3, 0.3, False)
    first = _unrolled_gradient(scorer.w.detach(), scorer.b.detach(), sx, sy, qx, qy, weights, 3, 0.3, True)
    assert (second[0] - first[0]).abs().max() > 1e-3


def test_outer_step_applies_exactly_that_gradient():
    scorer = LinearScorer(4)
    sx, sy, qx, qy = _batches(n_tasks=2, batch=5)
    features = [torch.cat([sx.reshape(-1, 4), qx.reshape(-1, 4)])]
    rows = torch.arange(20).reshape(4, 5)
    batch = TaskBatch(rows[:2], sy, rows[2:], qy)
    weights = torch.tensor([0.7, 0.3])
    want = _unrolled_gradient(scorer.w.detach(), scorer.b.detach(), sx, sy, qx, qy, weights, 2, 0.1, False)
    before = scorer.w.detach().clone()
    learner = MetaLearner(scorer, smooth_loss, inner_steps=2, inner_lr=0.1)
    optimizer = torch.optim.SGD(learner.parameters.values(), lr=0.5)
    result = learner.outer_step(optimizer, features, batch, weights, grad_clip=None)
    torch.testing.assert_close(scorer.w.grad, want[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scorer.w.detach(), before - 0.5 * want[0], rtol=1e-5, atol=1e-6)
    assert result.adapted["w"].shape == (2, 4)
    assert result.query_losses.shape == (2,)


def test_gather_stacks_task_batches():
    features = [torch.arange(10.0).reshape(5, 2), torch.arange(5.0)[:, None, None, None].expand(5, 1, 2, 2)]
    rows = torch.tensor([[0, 4], [2, 2]])
    out = gather(features, rows)
    assert out[0].shape == (2, 2, 2) and out[1].shape == (2, 2, 1, 2, 2)
    assert torch.equal(out[0][1, 0], features[0][2])


def test_unvmappable_scorer_falls_back_to_the_loop_with_the_same_result():
    torch.manual_seed(0)
    spec = FeatureSpec("vector", (4,))
    plain = VectorScorer(spec)
    item = ItemScorer(spec)
    item.load_state_dict(plain.state_dict())
    sx, sy, qx, qy = _batches()
    a = MetaLearner(plain, deviation_loss, inner_steps=2, inner_lr=0.01)
    b = MetaLearner(item, deviation_loss, inner_steps=2, inner_lr=0.01)
    qa, _, pa = a.task_losses([sx], sy, [qx], qy)
    qb, _, pb = b.task_losses([sx], sy, [qx], qy)
    assert a.vectorized is True and b.vectorized is False
    torch.testing.assert_close(qa, qb)
    for name in pa:
        torch.testing.assert_close(pa[name], pb[name])
    ga = torch.autograd.grad(qa.sum(), list(a.parameters.values()))
    gb = torch.autograd.grad(qb.sum(), list(b.parameters.values()))
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def test_relative_inner_step_moves_the_heads_by_the_asked_share_of_their_norm():
    """One relative step of 0.05 moves θ by 5% of ‖θ‖; the paper's plain 2e-4 step moves it by far less."""
    torch.manual_seed(0)
    sx, sy, qx, qy = _batches(n_tasks=3, batch=12, dim=4)
    weights = torch.full((3,), 1 / 3)
    moved = {}
    for update, lr in (("relative", 0.05), ("sgd", 2e-4)):
        scorer = LinearScorer(4)
        learner = MetaLearner(scorer, smooth_loss, inner_steps=1, inner_lr=lr, first_order=True, inner_update=update)
        optimizer = torch.optim.SGD(learner.parameters.values(), lr=0.0)
        features = [sx.reshape(-1, 4)]
        rows = torch.arange(36).reshape(3, 12)
        step = learner.outer_step(optimizer, features, TaskBatch(rows, sy, rows, sy), weights, None)
        moved[update] = step.inner_change
    torch.testing.assert_close(moved["relative"], torch.full((3,), 0.05), rtol=1e-4, atol=1e-6)
    assert float(moved["sgd"].max()) < 0.1 * float(moved["relative"].min())


def test_layerwise_inner_step_moves_every_tensor_by_the_asked_share_of_its_own_norm():
    """The global relative step can move a small tensor by a multiple of its norm; layerwise moves each by 5%."""
    torch.manual_seed(0)
    sx, sy, qx, qy = _batches(n_tasks=3, batch=12, dim=4)
    for update in ("relative", "layerwise"):
        scorer = LinearScorer(4)
        with torch.no_grad():
            scorer.w.mul_(10.0)  # the weight dwarfs the bias, as a wide conv dwarfs a 1×1 head
        learner = MetaLearner(scorer, smooth_loss, inner_steps=1, inner_lr=0.05, first_order=True, inner_update=update)
        _, _, adapted = learner.task_losses([sx], sy, [qx], qy)
        share = {
            name: (adapted[name].detach() - p.detach()).reshape(3, -1).norm(dim=1) / p.detach().norm()
            for name, p in learner.parameters.items()
        }
        if update == "layerwise":
            for moved in share.values():
                torch.testing.assert_close(moved, torch.full((3,), 0.05), rtol=1e-4, atol=1e-6)
        else:
            assert float(share["b"].max()) > 0.2  # the bias moved by far more than 5% of its norm


@pytest.mark.parametrize("update", ["relative", "layerwise"])
def test_relative_inner_steps_are_the_same_under_vmap_and_the_loop(update):
    sx, sy, qx, qy = _batches()
    weights = torch.tensor([0.2, 0.3, 0.5])
    grads = []
    for vectorize in (True, False):
        torch.manual_seed(0)
        scorer = LinearScorer(4)
        learner = MetaLearner(
            scorer, smooth_loss, inner_steps=2, inner_lr=0.1, inner_update=update, vectorize=vectorize
        )
        query, _, _ = learner.task_losses([sx], sy, [qx], qy)
        (weights * query).sum().backward()
        grads.append(torch.cat([scorer.w.grad.flatten(), scorer.b.grad.flatten()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("vectorize", [True, False])
def test_support_weight_adds_the_unified_model_s_support_losses(vectorize):
    """support_weight λ: the outer gradient is that of Σ w_t (L_q(θ_t') + λ L_s(θ)), under vmap and the loop."""
    scorer = LinearScorer(4)
    sx, sy, qx, qy = _batches(n_tasks=2, batch=5)
    features = [torch.cat([sx.reshape(-1, 4), qx.reshape(-1, 4)])]
    rows = torch.arange(20).reshape(4, 5)
    weights = torch.tensor([0.7, 0.3])
    meta = _unrolled_gradient(scorer.w.detach(), scorer.b.detach(), sx, sy, qx, qy, weights, 2, 0.1, True)
    w, b = scorer.w.detach().clone().requires_grad_(), scorer.b.detach().clone().requires_grad_()
    support = sum(weights[t] * smooth_loss({"score": sx[t] @ w + b}, sy[t]) for t in range(2))
    direct = torch.autograd.grad(0.5 * support, (w, b))
    learner = MetaLearner(
        scorer, smooth_loss, inner_steps=2, inner_lr=0.1, first_order=True, vectorize=vectorize, support_weight=0.5
    )
    optimizer = torch.optim.SGD(learner.parameters.values(), lr=0.0)
    learner.outer_step(optimizer, features, TaskBatch(rows[:2], sy, rows[2:], qy), weights, grad_clip=None)
    torch.testing.assert_close(scorer.w.grad, meta[0] + direct[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scorer.b.grad, meta[1] + direct[1], rtol=1e-5, atol=1e-6)
