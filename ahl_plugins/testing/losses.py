"""Loss checks: signature, scalar output, purity, the 0/1/2 label convention, absent groups."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN, takes_position_labels
from ahl_plugins.plugins import PluginManager
from ahl_plugins.seeding import seeded
from ahl_plugins.testing.common import (
    FEATURE_KINDS,
    Checker,
    ContractError,
    ContractReport,
    all_finite,
    describe,
    feature_spec,
    make_generator,
    make_labels,
    models_using,
    open_check,
)
from ahl_plugins.training.positions import position_head_names

_LABEL_LIKE = {"labels", "label", "y", "y_true", "target", "targets"}


def _head_direction(
    combine: Callable[[Mapping[str, torch.Tensor]], torch.Tensor] | None, base: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """How each head moves when the combined anomaly score goes up (e.g. DRA's normal head goes down)."""
    if combine is None:
        return {k: torch.ones_like(v) for k, v in base.items()}
    with torch.enable_grad():
        leaves = {k: v.detach().clone().requires_grad_() for k, v in base.items()}
        total = combine(leaves).sum()
        grads = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    return {
        k: (torch.zeros_like(v) if g is None else g.detach().sign())
        for (k, v), g in zip(leaves.items(), grads, strict=True)
    }


def loss_suite(
    checker: Checker,
    loss_fn: Any,
    head_names: Sequence[str],
    combine: Callable[[Mapping[str, torch.Tensor]], torch.Tensor] | None,
    seed: int,
    device: torch.device,
    source: str,
) -> None:
    if not callable(loss_fn):
        raise checker.fail("loss.build", f"the factory returned {describe(loss_fn)}, which is not callable")
    checker.ok("loss.build")
    try:
        parameters = list(inspect.signature(loss_fn).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional and positional[0].name.lower() in _LABEL_LIKE:
        names = ", ".join(p.name for p in positional)
        raise checker.fail(
            "loss.signature",
            f"the loss is declared as loss({names}): its first argument is the labels, but the host calls "
            "loss(heads, labels); swap the arguments",
        )
    if takes_position_labels(loss_fn):  # the host calls it with positions=...; empty where no maps are drawn
        loss_fn = functools.partial(loss_fn, positions={})

    labels = make_labels().to(device)
    noise = make_generator(seed, torch.device("cpu"))
    base = {h: (0.5 + 0.1 * torch.rand(len(labels), generator=noise)).to(device) for h in head_names}
    heads = {h: v.clone().requires_grad_() for h, v in base.items()}
    described = f"heads {{{', '.join(repr(h) for h in head_names)}}} (from {source})"
    try:
        value = loss_fn(heads, labels.clone())
    except Exception as exc:
        swapped_works = False
        with contextlib.suppress(Exception):
            loss_fn(labels.clone(), {h: v.clone() for h, v in heads.items()})
            swapped_works = True
        if swapped_works:
            raise checker.fail(
                "loss.signature",
                f"loss(heads, labels) raised {type(exc).__name__}: {exc}; but loss(labels, heads) runs: the "
                "loss takes its arguments in the wrong order. Declare it as loss(heads, labels)",
            ) from exc
        raise checker.fail(
            "loss.signature", f"loss(heads, labels) with {described} raised {type(exc).__name__}: {exc}"
        ) from exc
    checker.ok("loss.signature")

    def check_value(value: Any, what: str, leaves: Mapping[str, torch.Tensor]) -> None:
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            hint = " (reduce with .mean())" if isinstance(value, torch.Tensor) else ""
            raise checker.fail("loss.scalar", f"{what} returned {describe(value)}; expected a 0-dim tensor{hint}")
        if not value.is_floating_point() or not all_finite(value):
            raise checker.fail("loss.scalar", f"{what} returned {value!r}; expected a finite float")
        if not value.requires_grad:
            raise checker.fail(
                "loss.scalar", f"{what} does not require grad: it is not differentiable in the head scores"
            )
        grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
        if all(g is None for g in grads):
            raise checker.fail("loss.scalar", f"{what}: no gradient reaches any head score")
        bad = [h for h, g in zip(leaves, grads, strict=True) if g is not None and not all_finite(g)]
        if bad:
            raise checker.fail("loss.scalar", f"{what}: non-finite gradient for head(s) {bad}")

    check_value(value, "loss(heads, labels)", heads)
    checker.ok("loss.scalar")

    # purity
    with torch.no_grad():
        with seeded(seed + 11, device):
            first = loss_fn({h: v.clone() for h, v in base.items()}, labels.clone())
        with seeded(seed + 12, device):
            second = loss_fn({h: v.clone() for h, v in base.items()}, labels.clone())
        probe = {h: v.clone() for h, v in base.items()}
        probe_labels = labels.clone()
        loss_fn(probe, probe_labels)
    if not torch.equal(first, second):
        raise checker.fail(
            "loss.pure",
            f"the same heads and labels gave {float(first):.6g} and then {float(second):.6g} under another global RNG "
            "state; draw any randomness once, at construction, from a seeded generator",
        )
    modified = [h for h in base if not torch.equal(probe[h], base[h])]
    if modified or not torch.equal(probe_labels, labels):
        raise checker.fail(
            "loss.pure", f"the loss modified its inputs in place ({modified or 'labels'}); compute on copies"
        )
    checker.ok("loss.pure")

    # label convention, along the direction that raises the combined anomaly score
    wrong, strict = [], {LABEL_NORMAL: False, LABEL_SEEN: False, LABEL_PSEUDO: False}
    step = 0.5
    with torch.no_grad():
        for level in (0.25, 1.0, 4.0):
            point = {h: v - 0.5 + level for h, v in base.items()}
            direction = _head_direction(combine, point)
            reference = float(loss_fn(point, labels))
            for group in (LABEL_SEEN, LABEL_PSEUDO, LABEL_NORMAL):
                mask = (labels == group).to(base[head_names[0]].dtype)
                moved = {h: point[h] + step * direction[h] * mask for h in point}
                delta = float(loss_fn(moved, labels)) - reference
                tol = 1e-6 * max(1.0, abs(reference))
                right = delta < -tol if group != LABEL_NORMAL else delta > tol
                is_wrong = delta > tol if group != LABEL_NORMAL else delta < -tol
                strict[group] |= right
                if is_wrong:
                    wrong.append((group, level, delta))
    group_names = {LABEL_NORMAL: "normal (0)", LABEL_SEEN: "seen anomaly (1)", LABEL_PSEUDO: "pseudo anomaly (2)"}
    if wrong:
        group, level, delta = wrong[0]
        expected = "raise" if group == LABEL_NORMAL else "lower"
        raise checker.fail(
            "loss.labels",
            f"raising the anomaly score of the {group_names[group]} samples (heads near {level}) changed the loss by "
            f"{delta:+.4g}; it should {expected} it. Labels are 0 normal, 1 seen anomaly, 2 pseudo anomaly, and "
            "higher scores mean more anomalous",
        )
    missing = [group_names[g] for g, ok in strict.items() if not ok]
    if missing:
        raise checker.fail(
            "loss.labels",
            f"raising the anomaly score of the {' / '.join(missing)} samples never changed the loss (heads near "
            "0.25, 1 and 4); the loss ignores that label. Pseudo anomalies (2) count as anomalies too",
        )
    checker.ok("loss.labels")

    # absent groups
    for groups in ((LABEL_NORMAL,), (LABEL_NORMAL, LABEL_SEEN), (LABEL_NORMAL, LABEL_PSEUDO)):
        partial = make_labels(groups, per_label=3).to(device)
        leaves = {
            h: (0.5 + 0.1 * torch.rand(len(partial), generator=noise)).to(device).requires_grad_() for h in head_names
        }
        what = f"a batch with labels {sorted(set(groups))} only"
        with checker.guard("loss.absent-group", f"the loss on {what}"):
            value = loss_fn(leaves, partial)
            try:
                check_value(value, f"the loss on {what}", leaves)
            except ContractError as exc:
                raise checker.fail(
                    "loss.absent-group",
                    f"{exc.detail} (a mean over an empty label group gives NaN; guard empty groups)",
                ) from None
    checker.ok("loss.absent-group")


def position_suite(
    checker: Checker, loss_fn: Any, head_names: Sequence[str], map_names: Sequence[str], seed: int, device: torch.device
) -> None:
    """For a loss that declares ``uses_position_labels``: per-position labels (1 defect, 0 clean, NaN unknown)
    at each of ``map_names`` give a finite, differentiable loss that raising a defect position's map lowers
    and raising a clean position's map raises (or leaves unchanged, but not both unchanged)."""
    if not takes_position_labels(loss_fn):
        return
    names = tuple(map_names) or ("map",)
    labels = make_labels().to(device)
    n = len(labels)
    noise = make_generator(seed + 3, torch.device("cpu"))
    heads = {h: (0.5 + 0.1 * torch.rand(n, generator=noise)).to(device) for h in head_names}
    maps = {m: (0.1 * torch.randn(n, 4, 4, generator=noise)).to(device) for m in names}
    targets = torch.zeros(n, 4, 4)
    anomalous = (labels != LABEL_NORMAL).cpu()
    targets[anomalous, 1:3, 1:3] = 1.0  # a defect in the middle of every anomaly ...
    targets[torch.nonzero(anomalous).flatten()[:1]] = float("nan")  # ... except one without a mask: unknown
    positions = {m: targets.to(device) for m in names}
    leaves = {k: v.clone().requires_grad_() for k, v in maps.items()}
    what = f"loss(heads, labels, positions=...) with position maps {list(names)}"
    with checker.guard("loss.positions", what):
        value = loss_fn({**heads, **leaves}, labels, positions=positions)
    if not isinstance(value, torch.Tensor) or value.dim() != 0 or not all_finite(value):
        raise checker.fail("loss.positions", f"{what} returned {describe(value)}; expected a finite 0-dim tensor")
    grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
    if all(g is None for g in grads) or not all(g is None or all_finite(g) for g in grads):
        raise checker.fail(
            "loss.positions", f"{what}: no finite gradient reaches the position maps (NaN labels must be masked out)"
        )
    known = next(i for i in range(n) if bool(anomalous[i]) and not torch.isnan(targets[i]).any())
    with torch.no_grad():
        reference = float(loss_fn({**heads, **maps}, labels, positions=positions))
        deltas = {}
        for where, cell in (("defect", (1, 1)), ("clean", (0, 0))):
            moved = {k: v.clone() for k, v in maps.items()}
            for v in moved.values():
                v[known, cell[0], cell[1]] += 1.0
            deltas[where] = float(loss_fn({**heads, **moved}, labels, positions=positions)) - reference
    tol = 1e-6 * max(1.0, abs(reference))
    if deltas["defect"] > tol or deltas["clean"] < -tol or (abs(deltas["defect"]) <= tol and deltas["clean"] <= tol):
        raise checker.fail(
            "loss.positions",
            f"raising a position map where the label is 1 changed the loss by {deltas['defect']:+.4g} and where it is "
            f"0 by {deltas['clean']:+.4g}; it should lower it at defects and raise it at clean positions (maps are "
            "per-position anomaly scores, higher = more anomalous)",
        )
    checker.ok("loss.positions")


def _loss_context(
    manager: PluginManager,
    name: str,
    head_names: Sequence[str] | None,
    scorer: str | None,
    seed: int,
    device: torch.device,
) -> tuple[tuple[str, ...], Callable[..., torch.Tensor] | None, str, tuple[str, ...]]:
    """Head names, combine() and position head names to probe a loss with: from a scorer it is paired with."""
    if head_names is not None and scorer is None:
        return tuple(head_names), None, "the given head names", ()
    source, scorer_name, scorer_options = "", scorer, None
    if scorer_name is None:
        users = models_using(manager, "loss", name)
        if not users:
            return ("score",), None, "the default single head 'score' (no model bundles this loss)", ()
        model_name, spec = users[0]
        scorer_name, scorer_options = spec.scorer, spec.scorer_options
        source = f"scorer {scorer_name!r} of model {model_name!r}"
    else:
        source = f"scorer {scorer_name!r}"
    entry = manager.get("scorers", scorer_name)
    kinds = tuple(getattr(entry.factory, "supported_kinds", None) or FEATURE_KINDS)
    kind = "vector" if "vector" in kinds else kinds[0]
    try:
        with seeded(seed, device):
            built = entry.build(feature_spec(kind), options=scorer_options)
        built.head_names, built.combine  # noqa: B018 - both are needed below
    except Exception as exc:
        raise ContractError(
            "loss.signature",
            f"could not build {source} to learn which head scores the loss takes ({type(exc).__name__}: {exc}); "
            "check that scorer, or pass head_names=",
            kind="losses",
            name=name,
            plugin=manager.get("losses", name).plugin,
        ) from exc
    names = tuple(head_names) if head_names is not None else tuple(built.head_names)
    return names, built.combine, source, position_head_names(built)


def check_loss(
    name: str,
    manager: PluginManager | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    head_names: Sequence[str] | None = None,
    scorer: str | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ContractReport:
    """Check a registered loss: signature, scalar output, purity, 0/1/2 labels, absent groups.

    The head scores fed to it are named after ``head_names``, or after the heads
    of ``scorer`` (a registered scorer name), or of the scorer of the first
    model that bundles this loss; that scorer's ``combine`` says which way each
    head moves when the anomaly score goes up.
    """
    __tracebackhide__ = True
    manager, entry, checker, opts = open_check(manager, "losses", name, options, "loss.build")
    device = torch.device(device)
    with checker.guard("loss.build", "factory(options)"):
        loss_fn = entry.build(options=opts)
    names, combine, source, map_names = _loss_context(manager, name, head_names, scorer, seed, device)
    loss_suite(checker, loss_fn, names, combine, seed, device, source)
    position_suite(checker, loss_fn, names, map_names, seed, device)
    return checker.report
