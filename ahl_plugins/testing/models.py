"""Model checks: references, options, and scorer + loss together as the trainers use them."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from ahl_plugins.contracts import ComponentEntry, ModelSpec, takes_position_labels
from ahl_plugins.errors import UnknownComponentError
from ahl_plugins.plugins import PluginManager
from ahl_plugins.seeding import seeded
from ahl_plugins.testing.common import (
    Checker,
    ContractReport,
    all_finite,
    entry_of,
    feature_spec,
    kinds_to_check,
    loaded_manager,
    make_generator,
    make_labels,
    parse_options,
    synthetic_features,
)
from ahl_plugins.testing.losses import loss_suite, position_suite
from ahl_plugins.testing.scorer_reproducibility import forward_seeded
from ahl_plugins.testing.scorers import scorer_suite
from ahl_plugins.training.positions import position_head_names

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule


def _check_meta_gradient(
    checker: Checker,
    scorer: ScorerModule,
    loss_fn: Callable[..., torch.Tensor],
    kind: str,
    seed: int,
    device: torch.device,
    inner_lr: float = 1e-2,
) -> None:
    from torch.func import functional_call

    spec = feature_spec(kind)
    labels = make_labels().to(device)
    support = synthetic_features(spec, labels, make_generator(seed + 3, torch.device("cpu")), device=device)
    query = synthetic_features(spec, labels, make_generator(seed + 4, torch.device("cpu")), device=device)
    params: dict[str, torch.Tensor] = {n: p for n, p in scorer.named_parameters() if p.requires_grad}
    scorer.train()
    with checker.guard("model.meta-gradient", "an inner step through functional_call with create_graph=True", kind):
        with seeded(seed, device):
            inner = loss_fn(functional_call(scorer, params, (support,)), labels)
        grads = torch.autograd.grad(inner, list(params.values()), create_graph=True, allow_unused=True)
        adapted = {n: (p if g is None else p - inner_lr * g) for (n, p), g in zip(params.items(), grads, strict=True)}
        with seeded(seed, device):
            outer = loss_fn(functional_call(scorer, adapted, (query,)), labels)
        outer_grads = torch.autograd.grad(outer, list(params.values()), allow_unused=True)
    missing = [n for n, g in zip(params, outer_grads, strict=True) if g is None]
    if missing:
        raise checker.fail(
            "model.meta-gradient", f"the query loss after an inner step has no gradient for {missing}", kind
        )
    bad = [n for n, g in zip(params, outer_grads, strict=True) if not all_finite(g)]
    if bad or not math.isfinite(float(outer.detach())):
        raise checker.fail(
            "model.meta-gradient",
            f"the meta-gradient is not finite for {bad or 'the query loss'}; avoid operations whose second "
            "derivative is undefined at the synthetic points (e.g. sqrt at 0; add an epsilon)",
            kind,
        )
    checker.ok("model.meta-gradient", kind)


def _check_learns(
    checker: Checker,
    scorer: ScorerModule,
    loss_fn: Callable[..., torch.Tensor],
    kind: str,
    seed: int,
    device: torch.device,
    steps: int = 8,
    step_length: float = 0.02,
) -> None:
    """Normalised gradient descent: each step moves the parameters ``step_length`` against the
    gradient, a scale-free probe (and, unlike torch.optim, it does not pull in torch._dynamo)."""
    spec = feature_spec(kind)
    labels = make_labels().to(device)
    features = synthetic_features(spec, labels, make_generator(seed + 5, torch.device("cpu")), device=device)
    params = [p for p in scorer.parameters() if p.requires_grad]
    scorer.train()
    with checker.guard("model.learns", f"{steps} gradient steps", kind):
        with torch.no_grad():
            start = float(loss_fn(forward_seeded(scorer, features, seed, device), labels))
        for _ in range(steps):
            value = loss_fn(forward_seeded(scorer, features, seed, device), labels)
            grads = torch.autograd.grad(value, params, allow_unused=True)
            norm = torch.sqrt(torch.as_tensor(sum((g.detach() ** 2).sum() for g in grads if g is not None) + 1e-12))
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    if g is not None:
                        p.sub_(step_length * g / norm)
        with torch.no_grad():
            end = float(loss_fn(forward_seeded(scorer, features, seed, device), labels))
    if not end < start:
        raise checker.fail(
            "model.learns",
            f"after {steps} gradient-descent steps (each of length {step_length} in parameter space) on one fixed "
            f"synthetic batch the loss went from {start:.6g} to {end:.6g}; it should go down (a sign error, or a "
            "loss that does not depend on the scorer's output?)",
            kind,
        )
    checker.ok("model.learns", kind)


def _probe_vmap(
    checker: Checker,
    scorer: ScorerModule,
    loss_fn: Callable[..., torch.Tensor],
    kind: str,
    seed: int,
    device: torch.device,
) -> None:
    """Can AHL batch its tasks with torch.func.vmap? Not a requirement: it falls back to a loop."""
    from torch.func import functional_call, grad, vmap

    spec = feature_spec(kind)
    labels = make_labels().to(device)
    batches = [
        synthetic_features(spec, labels, make_generator(seed + 20 + t, torch.device("cpu")), device=device)
        for t in (0, 1)
    ]
    stacked_x = [torch.stack([b[i] for b in batches]) for i in range(spec.n_scales)]
    stacked_y = torch.stack([labels, labels])
    params = {n: p.detach() for n, p in scorer.named_parameters() if p.requires_grad}
    consts: dict[str, torch.Tensor] = {n: p for n, p in scorer.named_parameters() if not p.requires_grad}
    consts.update(dict(scorer.named_buffers()))

    def task(x: list[torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        return grad(lambda p: loss_fn(functional_call(scorer, (p, consts), (x,)), y))(params)

    try:
        with seeded(seed, device):
            vmap(task, in_dims=(0, 0), randomness="different")(stacked_x, stacked_y)
    except Exception as exc:  # noqa: BLE001 - any reason vmap refuses the scorer or the loss
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        checker.note(
            f"[{kind}] AHL cannot batch this model's tasks with torch.func.vmap ({type(exc).__name__}: {first_line}); "
            "it will fall back to a slower Python loop over tasks. Avoid .item(), data-dependent Python branches "
            "and in-place updates in forward() and the loss"
        )


def check_model(
    name: str,
    manager: PluginManager | None = None,
    *,
    kinds: Sequence[str] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ContractReport:
    """Check a model bundle: its references and options, then its scorer and loss
    together as the trainers use them, including one AHL-style meta-gradient."""
    __tracebackhide__ = True
    manager = loaded_manager(manager)
    entry = entry_of(manager, "models", name)
    checker = Checker(entry)
    device = torch.device(device)
    spec: ModelSpec = entry.factory
    refs = {
        "scorer": ("scorers", spec.scorer),
        "loss": ("losses", spec.loss),
        "image_extractor": ("feature_extractors", spec.image_extractor),
        "vector_extractor": ("feature_extractors", spec.vector_extractor),
    }
    found: dict[str, ComponentEntry] = {}
    for field_name, (registry_key, ref) in refs.items():
        try:
            found[field_name] = manager.get(registry_key, ref)
        except UnknownComponentError as exc:
            raise checker.fail("model.references", f"ModelSpec.{field_name} = {ref!r}: {exc}") from None
    checker.ok("model.references")
    scorer_entry, loss_entry = found["scorer"], found["loss"]
    scorer_options = parse_options(checker, scorer_entry, spec.scorer_options, "model.options")
    loss_options = parse_options(checker, loss_entry, spec.loss_options, "model.options")
    checker.ok("model.options")
    with checker.guard("loss.build", f"loss {spec.loss!r} factory(options)"):
        loss_fn = loss_entry.build(options=loss_options)
    label = f"loss {spec.loss!r}"
    # the image-label checks call it as the host does without position maps; per-position labels: position_suite
    image_loss = functools.partial(loss_fn, positions={}) if takes_position_labels(loss_fn) else loss_fn
    combine_source: ScorerModule | None = None
    for kind in kinds_to_check(checker, scorer_entry.factory, kinds):
        scorer = scorer_suite(checker, scorer_entry, scorer_options, kind, loss_fn, label, seed, device)
        combine_source = combine_source or scorer
        _check_meta_gradient(checker, scorer, image_loss, kind, seed, device)
        _probe_vmap(checker, scorer, image_loss, kind, seed, device)
        _check_learns(checker, scorer, image_loss, kind, seed, device)
    assert combine_source is not None
    loss_suite(
        checker,
        loss_fn,
        tuple(combine_source.head_names),
        combine_source.combine,
        seed,
        device,
        f"scorer {spec.scorer!r}",
    )
    position_suite(
        checker, loss_fn, tuple(combine_source.head_names), position_head_names(combine_source), seed, device
    )
    return checker.report
