"""Scorer checks: heads, combine, gradients, functional_call, state, batch independence, determinism."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from ahl_plugins.contracts import ComponentEntry, FeatureSpec, takes_position_labels
from ahl_plugins.errors import UnknownComponentError
from ahl_plugins.plugins import PluginManager
from ahl_plugins.seeding import seeded
from ahl_plugins.testing.common import (
    ATOL,
    N_PREPARE_NORMALS,
    RTOL,
    Checker,
    ContractReport,
    all_finite,
    describe,
    feature_spec,
    hidden_tensors,
    kinds_to_check,
    make_generator,
    make_labels,
    max_diff,
    models_using,
    open_check,
    surrogate_loss,
    synthetic_features,
)
from ahl_plugins.testing.scorer_maps import check_maps, check_position_heads
from ahl_plugins.testing.scorer_reproducibility import (
    check_batch_independence,
    check_determinism,
    check_state,
    forward_seeded,
)

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule


def _build_scorer(
    checker: Checker, entry: ComponentEntry, options: Any, kind: str, seed: int, device: torch.device
) -> ScorerModule:
    spec = feature_spec(kind)
    with checker.guard("scorer.build", f"factory({spec}, options)", kind), seeded(seed, device):
        scorer = entry.build(spec, options=options)
    if not isinstance(scorer, nn.Module):
        raise checker.fail(
            "scorer.build",
            f"the factory returned {describe(scorer)}, not a torch.nn.Module; subclass nn.Module so that "
            "functional_call, state_dict and .to(device) work",
            kind,
        )
    names = getattr(scorer, "head_names", None)
    if not isinstance(names, (tuple, list)) or not names or not all(isinstance(n, str) and n for n in names):
        raise checker.fail(
            "scorer.build",
            f"head_names must be a non-empty tuple of head names such as ('score',), got {names!r}",
            kind,
        )
    if len(set(names)) != len(names):
        raise checker.fail("scorer.build", f"head_names has duplicates: {names!r}", kind)
    if not callable(getattr(scorer, "combine", None)):
        raise checker.fail("scorer.build", "the scorer has no combine(heads) method", kind)
    declared = getattr(scorer, "supported_kinds", None)
    if declared is not None and kind not in tuple(declared):
        raise checker.fail(
            "scorer.supported-kinds",
            f"the scorer declares supported_kinds = {declared!r} but its factory built it for {kind} features; "
            "put supported_kinds on the factory too, so the host can tell before building",
            kind,
        )
    checker.ok("scorer.build", kind)
    return cast("ScorerModule", scorer.to(device))  # an nn.Module with head_names and combine, checked above


def _prepare(
    checker: Checker, scorer: ScorerModule, spec: FeatureSpec, seed: int, device: torch.device, kind: str
) -> list[torch.Tensor]:
    normals = synthetic_features(
        spec,
        torch.zeros(N_PREPARE_NORMALS, dtype=torch.long),
        make_generator(seed + 1, torch.device("cpu")),
        device=device,
    )
    prepare = getattr(scorer, "prepare", None)
    if not callable(prepare):
        raise checker.fail(
            "scorer.prepare",
            "the scorer has no prepare(normal_features, generator) method; add one (it may do nothing)",
            kind,
        )
    with checker.guard("scorer.prepare", f"prepare({N_PREPARE_NORMALS} normals, generator)", kind):
        prepare(normals, make_generator(seed, device))
    checker.ok("scorer.prepare", kind)
    return normals


def _check_heads(
    checker: Checker, scorer: ScorerModule, heads: Any, features: Sequence[torch.Tensor], kind: str
) -> torch.Tensor:
    batch = features[0].shape[0]
    names = tuple(scorer.head_names)
    if not isinstance(heads, Mapping):
        raise checker.fail(
            "scorer.heads",
            f"forward returned {describe(heads)}; it must return a dict of head scores, e.g. {{'score': scores}}",
            kind,
        )
    if set(heads) != set(names):
        raise checker.fail(
            "scorer.heads",
            f"forward returned heads {sorted(heads)} but head_names is {list(names)}; they must match exactly",
            kind,
        )
    for name in names:
        value = heads[name]
        if not isinstance(value, torch.Tensor):
            raise checker.fail("scorer.heads", f"head {name!r} is {describe(value)}, not a tensor", kind)
        if tuple(value.shape) != (batch,):
            hint = " (squeeze the trailing dimension)" if value.dim() == 2 and value.shape[-1] == 1 else ""
            raise checker.fail(
                "scorer.heads",
                f"head {name!r} has shape {tuple(value.shape)} for a batch of {batch}; expected ({batch},), "
                f"one score per sample{hint}",
                kind,
            )
        if value.dtype != features[0].dtype:
            raise checker.fail(
                "scorer.heads", f"head {name!r} has dtype {value.dtype}; the features are {features[0].dtype}", kind
            )
        if value.device != features[0].device:
            raise checker.fail(
                "scorer.heads", f"head {name!r} is on {value.device}; the features are on {features[0].device}", kind
            )
        if not all_finite(value):
            raise checker.fail("scorer.heads", f"head {name!r} has non-finite values: {value.tolist()}", kind)
    checker.ok("scorer.heads", kind)
    with checker.guard("scorer.combine", "combine(heads)", kind):
        combined = scorer.combine(heads)
    if not isinstance(combined, torch.Tensor) or tuple(combined.shape) != (batch,):
        raise checker.fail(
            "scorer.combine", f"combine(heads) returned {describe(combined)}; expected shape ({batch},)", kind
        )
    if not combined.is_floating_point() or not all_finite(combined):
        raise checker.fail("scorer.combine", f"combine(heads) must be finite floats, got {combined.tolist()}", kind)
    checker.ok("scorer.combine", kind)
    return combined


def _check_gradients(
    checker: Checker,
    scorer: ScorerModule,
    loss_fn: Callable[..., torch.Tensor],
    features: Sequence[torch.Tensor],
    labels: torch.Tensor,
    seed: int,
    device: torch.device,
    kind: str,
    loss_label: str,
) -> None:
    trainable = [(n, p) for n, p in scorer.named_parameters() if p.requires_grad]
    if not trainable:
        raise checker.fail(
            "scorer.trainable",
            "the scorer has no trainable parameters; AHL adapts the scorer's parameters, so there must be some "
            "(nn.Parameter with requires_grad=True)",
            kind,
        )
    checker.ok("scorer.trainable", kind)
    scorer.zero_grad(set_to_none=True)
    with checker.guard("scorer.gradients", f"{loss_label}(scorer(features), labels)", kind):
        value = loss_fn(forward_seeded(scorer, features, seed, device), labels)
    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        raise checker.fail(
            "scorer.gradients",
            f"{loss_label} of the scorer's heads does not require grad: the head scores are cut off from the "
            "parameters (computed under torch.no_grad(), detached, or via .item()/numpy); no parameter would learn",
            kind,
        )
    with checker.guard("scorer.gradients", f"backward() through {loss_label}", kind):
        value.backward()
    missing = [n for n, p in trainable if p.grad is None]
    if missing:
        raise checker.fail(
            "scorer.gradients",
            f"no gradient reaches parameter(s) {missing} through {loss_label}: they do not influence the heads "
            "(detached, unused, or used through a copy); remove them, set requires_grad=False, or connect them",
            kind,
        )
    grads = [(n, p.grad) for n, p in trainable if p.grad is not None]  # every one, after the check above
    bad = [n for n, g in grads if not all_finite(g)]
    if bad:
        raise checker.fail("scorer.gradients", f"non-finite gradients for parameter(s) {bad}", kind)
    if all(float(g.abs().max()) == 0.0 for _, g in grads):
        raise checker.fail(
            "scorer.gradients",
            f"every gradient through {loss_label} is exactly zero on a batch with normals and anomalies; "
            "the scores do not depend on the parameters",
            kind,
        )
    scorer.zero_grad(set_to_none=True)
    checker.ok("scorer.gradients", kind)


def _check_functional_call(
    checker: Checker,
    scorer: ScorerModule,
    loss_fn: Callable[..., torch.Tensor],
    features: Sequence[torch.Tensor],
    labels: torch.Tensor,
    seed: int,
    device: torch.device,
    kind: str,
) -> None:
    from torch.func import functional_call

    params = dict(scorer.named_parameters())
    noise = make_generator(seed + 7, torch.device("cpu"))
    swapped = {}
    for name, p in params.items():
        scale = 0.5 * (float(p.detach().abs().mean()) + 0.05) if p.numel() else 0.0
        delta = (torch.randn(p.shape, generator=noise) * scale).to(device=p.device, dtype=p.dtype)
        swapped[name] = (p.detach() + delta).requires_grad_(p.requires_grad)
    originals = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        before = forward_seeded(scorer, features, seed, device)
    with checker.guard(
        "scorer.functional-call", "torch.func.functional_call(scorer, swapped_parameters, (features,))", kind
    ):
        under_call = functional_call(scorer, swapped, (list(features),))
    changed = [n for n, p in params.items() if not torch.equal(p.detach(), originals[n])]
    if changed:
        raise checker.fail(
            "scorer.functional-call",
            f"functional_call changed the scorer's own parameter(s) {changed}; forward must not write to parameters",
            kind,
        )
    # What the scorer computes when it really holds the swapped parameters.
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(swapped[n])
        try:
            holding = forward_seeded(scorer, features, seed, device)
        finally:
            for n, p in params.items():
                p.copy_(originals[n])
    hidden = hidden_tensors(scorer, include_registered=True)
    hint = f" Tensors kept outside parameters/buffers: {hidden}." if hidden else ""
    for name in scorer.head_names:
        if not torch.allclose(under_call[name].detach(), holding[name], rtol=RTOL, atol=ATOL):
            stale = torch.allclose(under_call[name].detach(), before[name], rtol=RTOL, atol=ATOL)
            why = (
                "it equals the output with the ORIGINAL parameters, so the scorer uses copies of its parameters "
                "that functional_call cannot swap (kept in a list or dict, a plain attribute, or computed once in "
                "__init__/prepare)"
                if stale
                else "the output depends on something functional_call does not swap"
            )
            raise checker.fail(
                "scorer.functional-call",
                f"under functional_call with swapped parameters head {name!r} differs from what the scorer computes "
                f"when it holds those parameters (max |diff| {max_diff(under_call[name], holding[name]):.3g}); {why}. "
                f"Compute everything inside forward from self's registered parameters and buffers.{hint}",
                kind,
            )
    if all(torch.allclose(holding[n], before[n], rtol=RTOL, atol=ATOL) for n in scorer.head_names):
        raise checker.fail(
            "scorer.functional-call",
            "perturbing every parameter did not change any head score; the heads do not follow the parameters",
            kind,
        )
    targets = [(n, swapped[n]) for n in swapped if swapped[n].requires_grad]
    with checker.guard(
        "scorer.functional-call", "differentiating the loss with respect to the swapped parameters", kind
    ):
        value = loss_fn(under_call, labels)
        grads = torch.autograd.grad(value, [t for _, t in targets], allow_unused=True)
    missing = [n for (n, _), g in zip(targets, grads, strict=True) if g is None]
    if missing:
        raise checker.fail(
            "scorer.functional-call",
            f"under functional_call no gradient reaches the swapped parameter(s) {missing}: the AHL learner "
            f"could not adapt them.{hint}",
            kind,
        )
    checker.ok("scorer.functional-call", kind)


def scorer_suite(
    checker: Checker,
    entry: ComponentEntry,
    options: Any,
    kind: str,
    loss_fn: Callable[..., torch.Tensor] | None,
    loss_label: str,
    seed: int,
    device: torch.device,
) -> ScorerModule:
    """All scorer checks on one feature kind; returns the prepared scorer."""
    spec = feature_spec(kind)
    scorer = _build_scorer(checker, entry, options, kind, seed, device)
    _prepare(checker, scorer, spec, seed, device, kind)
    labels = make_labels().to(device)
    features = synthetic_features(spec, labels, make_generator(seed + 2, torch.device("cpu")), device=device)
    scorer.train()
    with checker.guard("scorer.heads", "forward(features) in train mode", kind):
        heads = forward_seeded(scorer, features, seed, device)
    _check_heads(checker, scorer, heads, features, kind)
    fn: Callable[..., torch.Tensor] = loss_fn or surrogate_loss(scorer)
    if takes_position_labels(fn):  # image labels only here; per-position labels: the loss.positions check
        fn = functools.partial(fn, positions={})
    _check_gradients(checker, scorer, fn, features, labels, seed, device, kind, loss_label)
    _check_functional_call(checker, scorer, fn, features, labels, seed, device, kind)
    check_state(checker, scorer, kind)
    check_batch_independence(checker, scorer, features, seed, device, kind)
    check_determinism(checker, entry, options, kind, features, seed, device)
    check_maps(checker, scorer, features, seed, device, kind)
    check_position_heads(checker, scorer, features, seed, device, kind)
    return scorer


def check_scorer(
    name: str,
    manager: PluginManager | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    loss: str | Callable[..., torch.Tensor] | None = None,
    kinds: Sequence[str] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ContractReport:
    """Check a registered scorer on map and vector features (those it supports).

    ``loss`` is a registered loss name or a callable used for the gradient
    checks; by default the loss of the first model that bundles this scorer,
    or a surrogate that separates anomalies from normals when no model does.
    """
    __tracebackhide__ = True
    manager, entry, checker, opts = open_check(manager, "scorers", name, options, "scorer.build")
    device = torch.device(device)
    loss_fn: Callable[..., torch.Tensor] | None = None
    loss_label = "a surrogate loss (no model bundles this scorer)"
    loss_options: Mapping[str, Any] | None
    loss_name, loss_options = (loss, None) if isinstance(loss, str) else (None, None)
    if callable(loss):
        loss_fn, loss_label = loss, "the given loss"
    elif loss_name is not None:
        loss_label = f"loss {loss_name!r}"
    else:
        users = models_using(manager, "scorer", name)
        if users:
            model_name, spec = users[0]
            loss_name, loss_options = spec.loss, spec.loss_options
            loss_label = f"loss {loss_name!r} (as model {model_name!r} bundles it)"
    if loss_name is not None:
        try:
            loss_entry = manager.get("losses", loss_name)
        except UnknownComponentError:
            if loss is not None:
                raise
            checker.skip(f"{loss_label}: that loss is not registered; used a surrogate loss instead")
            loss_name, loss_label = None, "a surrogate loss"
    if loss_name is not None:
        with checker.guard("scorer.gradients", f"building {loss_label}"):
            loss_fn = loss_entry.build(options=loss_options)
    for kind in kinds_to_check(checker, entry.factory, kinds):
        scorer_suite(checker, entry, opts, kind, loss_fn, loss_label, seed, device)
    return checker.report
