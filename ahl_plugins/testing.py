"""The contract kit: does a registered component do what the host relies on?

Plugin authors run it in their own test suites::

    import pytest
    from ahl_plugins.testing import check_component, components_of

    @pytest.mark.parametrize(("kind", "name"), components_of("my_plugin"))
    def test_contract(kind, name):
        check_component(kind, name)

and from the command line (``ahl plugins check NAME``). Every check builds
the component from the registry, feeds it small synthetic inputs, and raises
:class:`ContractError` (an ``AssertionError``, so pytest shows it as a plain
failure) naming the requirement that broke, what was observed, and how to fix
it. The requirement ids and their one-line statements are in
:data:`REQUIREMENTS`; ``docs/plugins.md`` lists them for plugin authors.

Why these checks: the AHL learner adapts copies of a scorer's parameters with
``torch.func.functional_call`` and differentiates through that adaptation, the
base trainer and AHL both call the loss as ``loss(heads, labels)`` with labels
0/1/2 and batches in which a label group may be missing, and features are
cached by the extractor's fingerprint. A component that breaks any of these
fails later, far from its cause; the kit fails it here, by name.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ahl_plugins.contracts import (
    LABEL_NORMAL,
    LABEL_PSEUDO,
    LABEL_SEEN,
    ComponentEntry,
    FeatureSpec,
    ModelSpec,
)
from ahl_plugins.errors import UnknownComponentError
from ahl_plugins.plugins import PluginManager, get_manager
from ahl_plugins.registry import KINDS, KINDS_BY_KEY
from ahl_plugins.seeding import seeded

__all__ = [
    "FEATURE_KINDS",
    "REQUIREMENTS",
    "ContractError",
    "ContractReport",
    "check_all",
    "check_component",
    "check_estimator",
    "check_extractor",
    "check_generator",
    "check_loss",
    "check_model",
    "check_scorer",
    "components_of",
    "feature_spec",
    "parametrize_components",
    "resolve_targets",
    "run_checks",
    "synthetic_features",
]

FEATURE_KINDS: tuple[str, ...] = ("map", "vector")

# Synthetic inputs: small, but shaped like the real thing (two map scales of
# different resolution with the same channels, as one backbone at two input
# sizes gives; one vector scale).
MAP_CHANNELS: tuple[int, ...] = (8, 8)
MAP_SIZES: tuple[int, ...] = (8, 4)
VECTOR_DIM = 10
PER_LABEL = 4
N_PREPARE_NORMALS = 16
IMAGE_SIZE_FOR_GENERATORS = 64
# (T tasks, E epochs of history): a long history with an unusual T (catches a
# hard-coded T = 6) checked twice for determinism, then a short one.
ESTIMATOR_CASES: tuple[tuple[int, int], ...] = ((3, 6), (6, 2))
ESTIMATOR_SAMPLES = 24

# Tolerances for "the same numbers computed two ways".
RTOL, ATOL = 1e-4, 1e-5

REQUIREMENTS: dict[str, str] = {
    # scorers
    "scorer.supported-kinds": "supported_kinds, if declared, is a non-empty subset of ('map', 'vector')",
    "scorer.build": "factory(spec, options) returns an nn.Module with a non-empty tuple head_names and combine()",
    "scorer.prepare": "prepare(normal_features, generator) exists and runs on the training normals' features",
    "scorer.trainable": "the scorer has at least one trainable parameter (AHL adapts parameters)",
    "scorer.heads": "forward(list of per-scale features) returns a dict with exactly head_names, each a finite (B,) float tensor of the features' dtype and device",
    "scorer.combine": "combine(heads) returns one finite (B,) float score per sample",
    "scorer.gradients": "the loss's gradient reaches every trainable parameter of the scorer and is finite",
    "scorer.functional-call": "under torch.func.functional_call with swapped parameters the output follows the swapped parameters, and gradients reach them",
    "scorer.state": "every tensor the scorer keeps is a registered parameter or buffer (functional_call and state_dict see nothing else)",
    "scorer.batch-independent": "in eval mode a sample's scores do not depend on the rest of the batch (a batch of one works)",
    "scorer.determinism": "built under the same seed and prepared with an equally seeded generator, the scores are identical; prepare draws randomness only from its generator",
    # losses
    "loss.build": "factory(options) returns a callable",
    "loss.signature": "the loss is called as loss(heads, labels): heads a dict of (B,) head scores, labels a (B,) long tensor",
    "loss.scalar": "the loss is a finite 0-dim float tensor, differentiable in the head scores with finite gradients",
    "loss.pure": "the same inputs give the same loss whatever the global RNG state, and the inputs are not modified",
    "loss.labels": "label convention: raising the anomaly score of label 1 or 2 samples lowers the loss, raising it for label 0 samples raises it",
    "loss.absent-group": "the loss and its gradients stay finite when seen (1) or pseudo (2) anomalies are absent from the batch",
    # models
    "model.references": "the scorer, loss and extractors a model names are registered",
    "model.options": "the model's scorer_options and loss_options validate against the components' option models",
    "model.meta-gradient": "one functional inner step (create_graph=True) followed by a query loss gives finite gradients for every trainable parameter",
    "model.learns": "a few Adam steps on a fixed synthetic batch lower the model's loss",
    # feature extractors
    "extractor.build": "factory(options) returns a FeatureExtractor (spec, fingerprint(), extract(); input_kind 'image' or 'vector')",
    "extractor.spec": "spec is a FeatureSpec (after fit() for vector extractors)",
    "extractor.output": "extract(batch) returns one finite float tensor per scale, B×C×H×W for maps or B×C for vectors, with C = spec.channels",
    "extractor.fingerprint": "fingerprint() is a non-empty string, stable across calls and builds, and equal fingerprints give equal features",
    "extractor.frozen": "extract is deterministic, batch-independent, and leaves its input unchanged",
    # pseudo-anomaly generators
    "generator.build": "factory(options) returns a PseudoAnomalyGenerator with generate() and domain 'image' or 'vector'",
    "generator.output": "generate(x, pool, generator) returns (anomalies, mask): anomalies like x (images stay in [0, 1]), mask bool B×1×S×S or B×D",
    "generator.mask": "the output differs from x only where mask is true, and every sample is changed",
    "generator.determinism": "the same seeded generator gives the same output whatever the global RNG state; inputs are not modified",
    # estimators
    "estimator.build": "factory(n_tasks, options) returns an estimator with task_weights(history, targets, error_weights)",
    "estimator.weights": "task_weights returns (T,) finite non-negative weights summing to 1, for any T and history length",
    "estimator.determinism": "under the same seed, fresh estimators give identical weights for identical inputs",
}

_KIND_ALIASES: dict[str, str] = {
    "scorer": "scorers",
    "loss": "losses",
    "model": "models",
    "extractor": "feature_extractors",
    "extractors": "feature_extractors",
    "feature_extractor": "feature_extractors",
    "feature-extractor": "feature_extractors",
    "generator": "pseudo_anomaly_generators",
    "generators": "pseudo_anomaly_generators",
    "pseudo_anomaly_generator": "pseudo_anomaly_generators",
    "pseudo-anomaly-generator": "pseudo_anomaly_generators",
    "estimator": "estimators",
}
# Checked in this order, so that a model is checked after the parts it names.
_CHECK_ORDER = ("feature_extractors", "pseudo_anomaly_generators", "estimators", "losses", "scorers", "models")


class ContractError(AssertionError):
    """A component broke one requirement of its contract.

    ``requirement`` is an id from :data:`REQUIREMENTS`; ``passed`` lists the
    requirements the component met before this one broke.
    """

    def __init__(
        self,
        requirement: str,
        detail: str,
        *,
        kind: str = "",
        name: str = "",
        plugin: str = "",
        feature_kind: str | None = None,
        passed: Sequence[str] = (),
        failures: Sequence[ContractError] = (),
    ) -> None:
        self.requirement = requirement
        self.detail = detail
        self.kind = kind
        self.name = name
        self.plugin = plugin
        self.feature_kind = feature_kind
        self.passed = list(passed)
        self.failures = list(failures)
        super().__init__(self._message())

    def _message(self) -> str:
        if self.failures:
            lines = [f"{len(self.failures)} component(s) broke their contract:"]
            lines += [f"- {failure}" for failure in self.failures]
            return "\n".join(lines)
        label = KINDS_BY_KEY[self.kind].label if self.kind in KINDS_BY_KEY else self.kind
        who = f"{label} {self.name!r}" + (f" (plugin {self.plugin!r})" if self.plugin else "")
        where = f" on {self.feature_kind} features" if self.feature_kind else ""
        statement = REQUIREMENTS.get(self.requirement, "")
        statement = f" {statement}" if statement else ""
        return f"{who}{where} breaks [{self.requirement}]{statement}:\n  {self.detail}"


@dataclass
class ContractReport:
    """What one component passed, what was skipped and why, and the failure if any."""

    kind: str
    name: str
    plugin: str
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: ContractError | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "ok": self.ok,
            "passed": list(self.passed),
            "skipped": list(self.skipped),
            "notes": list(self.notes),
            "failed": None
            if self.error is None
            else {
                "requirement": self.error.requirement,
                "feature_kind": self.error.feature_kind,
                "detail": self.error.detail,
            },
        }


class _Checker:
    """Records passed requirements of one component and raises on the first broken one."""

    def __init__(self, entry: ComponentEntry) -> None:
        self.entry = entry
        self.report = ContractReport(entry.kind, entry.name, entry.plugin)

    def ok(self, requirement: str, feature_kind: str | None = None) -> None:
        label = f"{requirement} [{feature_kind}]" if feature_kind else requirement
        if label not in self.report.passed:
            self.report.passed.append(label)

    def skip(self, reason: str) -> None:
        self.report.skipped.append(reason)

    def note(self, text: str) -> None:
        """Advice that does not break the contract (e.g. a slower code path the host will take)."""
        if text not in self.report.notes:
            self.report.notes.append(text)

    def fail(self, requirement: str, detail: str, feature_kind: str | None = None) -> ContractError:
        return ContractError(
            requirement,
            detail,
            kind=self.entry.kind,
            name=self.entry.name,
            plugin=self.entry.plugin,
            feature_kind=feature_kind,
            passed=self.report.passed,
        )

    @contextlib.contextmanager
    def guard(self, requirement: str, action: str, feature_kind: str | None = None) -> Iterator[None]:
        """Turn any exception the component raises into a ContractError for ``requirement``."""
        try:
            yield
        except ContractError:
            raise
        except Exception as exc:  # the component may raise anything
            raise self.fail(requirement, f"{action} raised {type(exc).__name__}: {exc}", feature_kind) from exc


# -- small helpers ------------------------------------------------------------------
def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def _manager(manager: PluginManager | None) -> PluginManager:
    return (manager or get_manager()).load()


def _kind_key(kind: str) -> str:
    key = _KIND_ALIASES.get(kind, kind)
    if key not in KINDS_BY_KEY:
        valid = ", ".join(sorted(set(KINDS_BY_KEY) | set(_KIND_ALIASES)))
        raise ValueError(f"unknown component kind {kind!r}; valid kinds: {valid}")
    return key


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max()) if a.numel() else 0.0


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _all_finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def feature_spec(kind: str, channels: Sequence[int] | None = None) -> FeatureSpec:
    """The synthetic feature spec the kit uses for ``kind`` ('map' or 'vector')."""
    if kind == "map":
        return FeatureSpec("map", tuple(channels or MAP_CHANNELS))
    if kind == "vector":
        return FeatureSpec("vector", tuple(channels or (VECTOR_DIM,)))
    raise ValueError(f"feature kind must be 'map' or 'vector', got {kind!r}")


def synthetic_features(
    spec: FeatureSpec,
    labels: torch.Tensor,
    generator: torch.Generator,
    sizes: Sequence[int] = MAP_SIZES,
    device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """Per-scale features where anomalies are separable from normals, and the two
    anomaly labels differ from each other (seen anomalies are bright in one corner
    and the first channels, pseudo anomalies in the other corner and the last ones).

    Maps are non-negative (as after a ReLU backbone); vectors are standard normal.
    """
    labels = labels.cpu()
    seen = (labels == LABEL_SEEN).float()
    pseudo = (labels == LABEL_PSEUDO).float()
    out = []
    for scale, channels in enumerate(spec.channels):
        half = max(1, channels // 2)
        if spec.kind == "map":
            size = int(sizes[scale % len(sizes)])
            x = torch.randn(len(labels), channels, size, size, generator=generator).relu()
            corner = max(1, size // 2)
            x[:, :half, :corner, :corner] += 2.0 * seen.view(-1, 1, 1, 1)
            x[:, channels - half :, size - corner :, size - corner :] += 2.0 * pseudo.view(-1, 1, 1, 1)
        else:
            x = torch.randn(len(labels), channels, generator=generator)
            x[:, :half] += 2.0 * seen.view(-1, 1)
            x[:, channels - half :] -= 2.0 * pseudo.view(-1, 1)
        out.append(x.to(device))
    return out


def _labels(
    groups: Sequence[int] = (LABEL_NORMAL, LABEL_SEEN, LABEL_PSEUDO), per_label: int = PER_LABEL
) -> torch.Tensor:
    return torch.tensor([g for g in groups for _ in range(per_label)], dtype=torch.long)


def _hidden_tensors(module: nn.Module, include_registered: bool = False) -> list[str]:
    """Tensors a module keeps outside its parameters and buffers (attributes, lists, dicts).

    References to its own registered tensors (e.g. ``nn.LSTM._flat_weights``)
    are left out unless ``include_registered``: they are state_dict-safe, and
    whether they follow ``functional_call`` is checked by behaviour.
    """
    registered = {id(t) for t in module.parameters()} | {id(t) for t in module.buffers()}

    def walk(value: Any, where: str, depth: int) -> list[str]:
        if isinstance(value, torch.Tensor):
            return [where] if include_registered or id(value) not in registered else []
        if depth >= 3:
            return []
        if isinstance(value, (list, tuple)):
            return [hit for i, v in enumerate(value) for hit in walk(v, f"{where}[{i}]", depth + 1)]
        if isinstance(value, dict):
            return [hit for k, v in value.items() for hit in walk(v, f"{where}[{k!r}]", depth + 1)]
        return []

    found = []
    for prefix, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if attr in ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set", "_flat_weights"):
                continue
            found += walk(value, f"{prefix}.{attr}" if prefix else attr, 0)
    return found


def _surrogate_loss(scorer: nn.Module) -> Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """A loss for a scorer checked on its own: separate combined scores, touch every head."""

    def loss(heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        sign = torch.where(labels > LABEL_NORMAL, -1.0, 1.0).to(next(iter(heads.values())).dtype)
        total = (sign * scorer.combine(heads)).mean()
        for value in heads.values():
            total = total + 1e-3 * value.mean()
        return total

    return loss


# -- registry look-ups ----------------------------------------------------------------
def _entry(manager: PluginManager, kind: str, name: str) -> ComponentEntry:
    return manager.get(kind, name)


def _models_using(manager: PluginManager, field_name: str, component: str) -> list[tuple[str, ModelSpec]]:
    return [(e.name, e.factory) for e in manager.registry("models") if getattr(e.factory, field_name) == component]


def _parse_options(checker: _Checker, entry: ComponentEntry, values: Mapping[str, Any] | None, requirement: str) -> Any:
    try:
        return entry.parse_options(values)
    except Exception as exc:
        hint = (
            ""
            if values
            else " (the kit builds components with default options: give every option a default, or pass options=...)"
        )
        raise checker.fail(requirement, f"options do not validate{hint}: {exc}") from exc


def _supported_kinds(
    checker: _Checker, obj: Any, requirement: str = "scorer.supported-kinds"
) -> tuple[str, ...] | None:
    declared = getattr(obj, "supported_kinds", None)
    if declared is None:
        return None
    if isinstance(declared, str) or not isinstance(declared, (tuple, list, set, frozenset)):
        raise checker.fail(requirement, f"supported_kinds must be a tuple such as ('vector',), got {declared!r}")
    kinds = tuple(declared)
    bad = [k for k in kinds if k not in FEATURE_KINDS]
    if not kinds or bad:
        raise checker.fail(
            requirement, f"supported_kinds = {declared!r}; allowed values are 'map' and 'vector', at least one"
        )
    checker.ok(requirement)
    return kinds


def _kinds_to_check(checker: _Checker, factory: Any, kinds: Sequence[str] | None) -> list[str]:
    for kind in kinds or ():
        if kind not in FEATURE_KINDS:
            raise ValueError(f"feature kind must be 'map' or 'vector', got {kind!r}")
    supported = _supported_kinds(checker, factory)
    wanted = list(kinds or FEATURE_KINDS)
    if supported is None:
        return wanted
    for kind in wanted:
        if kind not in supported:
            checker.skip(f"{kind} features: not in supported_kinds {supported}")
    chosen = [k for k in wanted if k in supported]
    if not chosen:
        raise ValueError(f"{checker.entry.name!r} supports only {supported} features; asked to check {tuple(wanted)}")
    return chosen


# -- scorers ----------------------------------------------------------------------------
def _build_scorer(
    checker: _Checker, entry: ComponentEntry, options: Any, kind: str, seed: int, device: torch.device
) -> nn.Module:
    spec = feature_spec(kind)
    with checker.guard("scorer.build", f"factory({spec}, options)", kind), seeded(seed, device):
        scorer = entry.factory(spec, options)
    if not isinstance(scorer, nn.Module):
        raise checker.fail(
            "scorer.build",
            f"the factory returned {_describe(scorer)}, not a torch.nn.Module; subclass nn.Module so that "
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
    return scorer.to(device)


def _prepare(
    checker: _Checker, scorer: nn.Module, spec: FeatureSpec, seed: int, device: torch.device, kind: str
) -> list[torch.Tensor]:
    normals = synthetic_features(
        spec, torch.zeros(N_PREPARE_NORMALS, dtype=torch.long), _generator(seed + 1, torch.device("cpu")), device=device
    )
    prepare = getattr(scorer, "prepare", None)
    if not callable(prepare):
        raise checker.fail(
            "scorer.prepare",
            "the scorer has no prepare(normal_features, generator) method; add one (it may do nothing)",
            kind,
        )
    with checker.guard("scorer.prepare", f"prepare({N_PREPARE_NORMALS} normals, generator)", kind):
        prepare(normals, _generator(seed, device))
    checker.ok("scorer.prepare", kind)
    return normals


def _forward(scorer: nn.Module, features: Sequence[torch.Tensor], seed: int, device: torch.device) -> Any:
    with seeded(seed, device):
        return scorer(list(features))


def _check_heads(
    checker: _Checker, scorer: nn.Module, heads: Any, features: Sequence[torch.Tensor], kind: str
) -> torch.Tensor:
    batch = features[0].shape[0]
    names = tuple(scorer.head_names)
    if not isinstance(heads, Mapping):
        raise checker.fail(
            "scorer.heads",
            f"forward returned {_describe(heads)}; it must return a dict of head scores, e.g. {{'score': scores}}",
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
            raise checker.fail("scorer.heads", f"head {name!r} is {_describe(value)}, not a tensor", kind)
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
        if not _all_finite(value):
            raise checker.fail("scorer.heads", f"head {name!r} has non-finite values: {value.tolist()}", kind)
    checker.ok("scorer.heads", kind)
    with checker.guard("scorer.combine", "combine(heads)", kind):
        combined = scorer.combine(heads)
    if not isinstance(combined, torch.Tensor) or tuple(combined.shape) != (batch,):
        raise checker.fail(
            "scorer.combine", f"combine(heads) returned {_describe(combined)}; expected shape ({batch},)", kind
        )
    if not combined.is_floating_point() or not _all_finite(combined):
        raise checker.fail("scorer.combine", f"combine(heads) must be finite floats, got {combined.tolist()}", kind)
    checker.ok("scorer.combine", kind)
    return combined


def _check_gradients(
    checker: _Checker,
    scorer: nn.Module,
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
        value = loss_fn(_forward(scorer, features, seed, device), labels)
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
    bad = [n for n, p in trainable if not _all_finite(p.grad)]
    if bad:
        raise checker.fail("scorer.gradients", f"non-finite gradients for parameter(s) {bad}", kind)
    if all(float(p.grad.abs().max()) == 0.0 for _, p in trainable):
        raise checker.fail(
            "scorer.gradients",
            f"every gradient through {loss_label} is exactly zero on a batch with normals and anomalies; "
            "the scores do not depend on the parameters",
            kind,
        )
    scorer.zero_grad(set_to_none=True)
    checker.ok("scorer.gradients", kind)


def _check_functional_call(
    checker: _Checker,
    scorer: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    features: Sequence[torch.Tensor],
    labels: torch.Tensor,
    seed: int,
    device: torch.device,
    kind: str,
) -> None:
    from torch.func import functional_call

    params = dict(scorer.named_parameters())
    noise = _generator(seed + 7, torch.device("cpu"))
    swapped = {}
    for name, p in params.items():
        scale = 0.5 * (float(p.detach().abs().mean()) + 0.05) if p.numel() else 0.0
        delta = (torch.randn(p.shape, generator=noise) * scale).to(device=p.device, dtype=p.dtype)
        swapped[name] = (p.detach() + delta).requires_grad_(p.requires_grad)
    originals = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        before = _forward(scorer, features, seed, device)
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
            holding = _forward(scorer, features, seed, device)
        finally:
            for n, p in params.items():
                p.copy_(originals[n])
    hidden = _hidden_tensors(scorer, include_registered=True)
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
                f"when it holds those parameters (max |diff| {_max_diff(under_call[name], holding[name]):.3g}); {why}. "
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


def _check_state(checker: _Checker, scorer: nn.Module, kind: str) -> None:
    hidden = _hidden_tensors(scorer)
    if hidden:
        raise checker.fail(
            "scorer.state",
            f"the scorer keeps tensors outside its parameters and buffers: {hidden}; functional_call cannot swap "
            "them and save/load would lose them. Use nn.Parameter or self.register_buffer(name, tensor)",
            kind,
        )
    checker.ok("scorer.state", kind)


def _check_batch_independence(
    checker: _Checker, scorer: nn.Module, features: Sequence[torch.Tensor], seed: int, device: torch.device, kind: str
) -> None:
    scorer.eval()
    try:
        with torch.no_grad(), checker.guard("scorer.batch-independent", "scoring in eval mode", kind):
            full = scorer.combine(_forward(scorer, features, seed, device))
            for i in (0, features[0].shape[0] - 1):
                alone = scorer.combine(_forward(scorer, [f[i : i + 1] for f in features], seed, device))
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


def _check_determinism(
    checker: _Checker,
    entry: ComponentEntry,
    options: Any,
    kind: str,
    features: Sequence[torch.Tensor],
    seed: int,
    device: torch.device,
) -> None:
    spec = feature_spec(kind)
    normals = synthetic_features(
        spec, torch.zeros(N_PREPARE_NORMALS, dtype=torch.long), _generator(seed + 1, torch.device("cpu")), device=device
    )

    def run(global_seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        with seeded(seed, device):
            scorer = entry.factory(spec, options).to(device)
        initial = {k: v.detach().clone() for k, v in scorer.state_dict().items()}
        with seeded(global_seed, device):  # a different global RNG state must not matter to prepare
            scorer.prepare(normals, _generator(seed, device))
        scorer.eval()
        with torch.no_grad():
            return initial, scorer.combine(_forward(scorer, features, seed, device))

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
            f"{_max_diff(scores_a, scores_b):.3g}) when the global RNG differed; draw randomness in prepare() "
            "only from the generator it receives",
            kind,
        )
    checker.ok("scorer.determinism", kind)


def _scorer_suite(
    checker: _Checker,
    entry: ComponentEntry,
    options: Any,
    kind: str,
    loss_fn: Callable[..., torch.Tensor] | None,
    loss_label: str,
    seed: int,
    device: torch.device,
) -> nn.Module:
    """All scorer checks on one feature kind; returns the prepared scorer."""
    spec = feature_spec(kind)
    scorer = _build_scorer(checker, entry, options, kind, seed, device)
    _prepare(checker, scorer, spec, seed, device, kind)
    labels = _labels().to(device)
    features = synthetic_features(spec, labels, _generator(seed + 2, torch.device("cpu")), device=device)
    scorer.train()
    with checker.guard("scorer.heads", "forward(features) in train mode", kind):
        heads = _forward(scorer, features, seed, device)
    _check_heads(checker, scorer, heads, features, kind)
    fn = loss_fn or _surrogate_loss(scorer)
    _check_gradients(checker, scorer, fn, features, labels, seed, device, kind, loss_label)
    _check_functional_call(checker, scorer, fn, features, labels, seed, device, kind)
    _check_state(checker, scorer, kind)
    _check_batch_independence(checker, scorer, features, seed, device, kind)
    _check_determinism(checker, entry, options, kind, features, seed, device)
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
    manager = _manager(manager)
    entry = _entry(manager, "scorers", name)
    checker = _Checker(entry)
    device = torch.device(device)
    opts = _parse_options(checker, entry, options, "scorer.build")
    loss_fn: Callable[..., torch.Tensor] | None = None
    loss_label = "a surrogate loss (no model bundles this scorer)"
    loss_name, loss_options = (loss, None) if isinstance(loss, str) else (None, None)
    if callable(loss):
        loss_fn, loss_label = loss, "the given loss"
    elif loss_name is not None:
        loss_label = f"loss {loss_name!r}"
    else:
        users = _models_using(manager, "scorer", name)
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
            loss_fn = loss_entry.factory(loss_entry.parse_options(loss_options))
    for kind in _kinds_to_check(checker, entry.factory, kinds):
        _scorer_suite(checker, entry, opts, kind, loss_fn, loss_label, seed, device)
    return checker.report


# -- losses ------------------------------------------------------------------------------
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


def _loss_suite(
    checker: _Checker,
    loss_fn: Any,
    head_names: Sequence[str],
    combine: Callable[[Mapping[str, torch.Tensor]], torch.Tensor] | None,
    seed: int,
    device: torch.device,
    source: str,
) -> None:
    if not callable(loss_fn):
        raise checker.fail("loss.build", f"the factory returned {_describe(loss_fn)}, which is not callable")
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
    labels = _labels().to(device)
    noise = _generator(seed, torch.device("cpu"))
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
            raise checker.fail("loss.scalar", f"{what} returned {_describe(value)}; expected a 0-dim tensor{hint}")
        if not value.is_floating_point() or not _all_finite(value):
            raise checker.fail("loss.scalar", f"{what} returned {value!r}; expected a finite float")
        if not value.requires_grad:
            raise checker.fail(
                "loss.scalar", f"{what} does not require grad: it is not differentiable in the head scores"
            )
        grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
        if all(g is None for g in grads):
            raise checker.fail("loss.scalar", f"{what}: no gradient reaches any head score")
        bad = [h for h, g in zip(leaves, grads, strict=True) if g is not None and not _all_finite(g)]
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
    names = {LABEL_NORMAL: "normal (0)", LABEL_SEEN: "seen anomaly (1)", LABEL_PSEUDO: "pseudo anomaly (2)"}
    if wrong:
        group, level, delta = wrong[0]
        expected = "raise" if group == LABEL_NORMAL else "lower"
        raise checker.fail(
            "loss.labels",
            f"raising the anomaly score of the {names[group]} samples (heads near {level}) changed the loss by "
            f"{delta:+.4g}; it should {expected} it. Labels are 0 normal, 1 seen anomaly, 2 pseudo anomaly, and "
            "higher scores mean more anomalous",
        )
    missing = [names[g] for g, ok in strict.items() if not ok]
    if missing:
        raise checker.fail(
            "loss.labels",
            f"raising the anomaly score of the {' / '.join(missing)} samples never changed the loss (heads near "
            "0.25, 1 and 4); the loss ignores that label. Pseudo anomalies (2) count as anomalies too",
        )
    checker.ok("loss.labels")

    # absent groups
    for groups in ((LABEL_NORMAL,), (LABEL_NORMAL, LABEL_SEEN), (LABEL_NORMAL, LABEL_PSEUDO)):
        partial = _labels(groups, per_label=3).to(device)
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


def _loss_context(
    manager: PluginManager,
    name: str,
    head_names: Sequence[str] | None,
    scorer: str | None,
    seed: int,
    device: torch.device,
) -> tuple[tuple[str, ...], Callable[..., torch.Tensor] | None, str]:
    """Head names and combine() to probe a loss with: from a scorer it is paired with."""
    if head_names is not None and scorer is None:
        return tuple(head_names), None, "the given head names"
    source, scorer_name, scorer_options = "", scorer, None
    if scorer_name is None:
        users = _models_using(manager, "loss", name)
        if not users:
            return ("score",), None, "the default single head 'score' (no model bundles this loss)"
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
            built = entry.factory(feature_spec(kind), entry.parse_options(scorer_options))
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
    return names, built.combine, source


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
    manager = _manager(manager)
    entry = _entry(manager, "losses", name)
    checker = _Checker(entry)
    device = torch.device(device)
    opts = _parse_options(checker, entry, options, "loss.build")
    with checker.guard("loss.build", "factory(options)"):
        loss_fn = entry.factory(opts)
    names, combine, source = _loss_context(manager, name, head_names, scorer, seed, device)
    _loss_suite(checker, loss_fn, names, combine, seed, device, source)
    return checker.report


# -- models ------------------------------------------------------------------------------
def _check_meta_gradient(
    checker: _Checker,
    scorer: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    kind: str,
    seed: int,
    device: torch.device,
    inner_lr: float = 1e-2,
) -> None:
    from torch.func import functional_call

    spec = feature_spec(kind)
    labels = _labels().to(device)
    support = synthetic_features(spec, labels, _generator(seed + 3, torch.device("cpu")), device=device)
    query = synthetic_features(spec, labels, _generator(seed + 4, torch.device("cpu")), device=device)
    params = {n: p for n, p in scorer.named_parameters() if p.requires_grad}
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
    bad = [n for n, g in zip(params, outer_grads, strict=True) if not _all_finite(g)]
    if bad or not math.isfinite(float(outer.detach())):
        raise checker.fail(
            "model.meta-gradient",
            f"the meta-gradient is not finite for {bad or 'the query loss'}; avoid operations whose second "
            "derivative is undefined at the synthetic points (e.g. sqrt at 0; add an epsilon)",
            kind,
        )
    checker.ok("model.meta-gradient", kind)


def _check_learns(
    checker: _Checker,
    scorer: nn.Module,
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
    labels = _labels().to(device)
    features = synthetic_features(spec, labels, _generator(seed + 5, torch.device("cpu")), device=device)
    params = [p for p in scorer.parameters() if p.requires_grad]
    scorer.train()
    with checker.guard("model.learns", f"{steps} gradient steps", kind):
        with torch.no_grad():
            start = float(loss_fn(_forward(scorer, features, seed, device), labels))
        for _ in range(steps):
            value = loss_fn(_forward(scorer, features, seed, device), labels)
            grads = torch.autograd.grad(value, params, allow_unused=True)
            norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads if g is not None) + 1e-12)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    if g is not None:
                        p.sub_(step_length * g / norm)
        with torch.no_grad():
            end = float(loss_fn(_forward(scorer, features, seed, device), labels))
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
    checker: _Checker,
    scorer: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    kind: str,
    seed: int,
    device: torch.device,
) -> None:
    """Can AHL batch its tasks with torch.func.vmap? Not a requirement: it falls back to a loop."""
    from torch.func import functional_call, grad, vmap

    spec = feature_spec(kind)
    labels = _labels().to(device)
    batches = [
        synthetic_features(spec, labels, _generator(seed + 20 + t, torch.device("cpu")), device=device) for t in (0, 1)
    ]
    stacked_x = [torch.stack([b[i] for b in batches]) for i in range(spec.n_scales)]
    stacked_y = torch.stack([labels, labels])
    params = {n: p.detach() for n, p in scorer.named_parameters() if p.requires_grad}
    consts = {n: p for n, p in scorer.named_parameters() if not p.requires_grad}
    consts.update(dict(scorer.named_buffers()))

    def task(x: list[torch.Tensor], y: torch.Tensor) -> dict[str, torch.Tensor]:
        return grad(lambda p: loss_fn(functional_call(scorer, (p, consts), (x,)), y))(params)

    try:
        with seeded(seed, device):
            vmap(task, in_dims=(0, 0), randomness="different")(stacked_x, stacked_y)
    except Exception as exc:  # any reason vmap refuses the scorer or the loss
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
    manager = _manager(manager)
    entry = _entry(manager, "models", name)
    checker = _Checker(entry)
    device = torch.device(device)
    spec: ModelSpec = entry.factory
    refs = {
        "scorer": ("scorers", spec.scorer),
        "loss": ("losses", spec.loss),
        "image_extractor": ("feature_extractors", spec.image_extractor),
        "vector_extractor": ("feature_extractors", spec.vector_extractor),
    }
    found: dict[str, ComponentEntry] = {}
    for field_name, (kind_key, ref) in refs.items():
        try:
            found[field_name] = manager.get(kind_key, ref)
        except UnknownComponentError as exc:
            raise checker.fail("model.references", f"ModelSpec.{field_name} = {ref!r}: {exc}") from None
    checker.ok("model.references")
    scorer_entry, loss_entry = found["scorer"], found["loss"]
    scorer_options = _parse_options(checker, scorer_entry, spec.scorer_options, "model.options")
    loss_options = _parse_options(checker, loss_entry, spec.loss_options, "model.options")
    checker.ok("model.options")
    with checker.guard("loss.build", f"loss {spec.loss!r} factory(options)"):
        loss_fn = loss_entry.factory(loss_options)
    label = f"loss {spec.loss!r}"
    combine_source: nn.Module | None = None
    for kind in _kinds_to_check(checker, scorer_entry.factory, kinds):
        scorer = _scorer_suite(checker, scorer_entry, scorer_options, kind, loss_fn, label, seed, device)
        combine_source = combine_source or scorer
        _check_meta_gradient(checker, scorer, loss_fn, kind, seed, device)
        _probe_vmap(checker, scorer, loss_fn, kind, seed, device)
        _check_learns(checker, scorer, loss_fn, kind, seed, device)
    assert combine_source is not None
    _loss_suite(
        checker,
        loss_fn,
        tuple(combine_source.head_names),
        combine_source.combine,
        seed,
        device,
        f"scorer {spec.scorer!r}",
    )
    return checker.report


# -- feature extractors ------------------------------------------------------------------
def check_extractor(
    name: str,
    manager: PluginManager | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    batch_size: int = 3,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ContractReport:
    """Check a registered feature extractor on a small batch of its input kind."""
    __tracebackhide__ = True
    manager = _manager(manager)
    entry = _entry(manager, "feature_extractors", name)
    checker = _Checker(entry)
    device = torch.device(device)
    opts = _parse_options(checker, entry, options, "extractor.build")

    def build() -> Any:
        with checker.guard("extractor.build", "factory(options)"), seeded(seed, device):
            extractor = entry.factory(opts)
        missing = [
            m
            for m in ("extract", "fingerprint", "spec")
            if not hasattr(type(extractor), m) and not hasattr(extractor, m)
        ]
        if missing:
            raise checker.fail(
                "extractor.build",
                f"the factory returned {_describe(extractor)}, which lacks {missing}; subclass FeatureExtractor",
            )
        kind = getattr(extractor, "input_kind", None)
        if kind not in ("image", "vector"):
            raise checker.fail("extractor.build", f"input_kind must be 'image' or 'vector', got {kind!r}")
        if kind == "image" and not (isinstance(extractor.image_size, int) and extractor.image_size > 0):
            raise checker.fail(
                "extractor.build", f"an image extractor needs a positive int image_size, got {extractor.image_size!r}"
            )
        with checker.guard("extractor.build", ".to(device)"):
            moved = extractor.to(device)
        return moved if moved is not None else extractor

    extractor = build()
    checker.ok("extractor.build")
    data = _generator(seed, torch.device("cpu"))
    if extractor.input_kind == "image":
        size = extractor.image_size
        train = torch.rand(4, 3, size, size, generator=data).to(device)
        batch = torch.rand(batch_size, 3, size, size, generator=data).to(device)
    else:
        train = torch.randn(16, VECTOR_DIM, generator=data).to(device)
        batch = torch.randn(batch_size, VECTOR_DIM, generator=data).to(device)

    def fitted(extractor: Any) -> FeatureSpec:
        with checker.guard("extractor.spec", "fit(training inputs)"):
            extractor.fit(train.clone())
        with checker.guard("extractor.spec", "reading spec"):
            spec = extractor.spec
        if not isinstance(spec, FeatureSpec):
            raise checker.fail("extractor.spec", f"spec is {_describe(spec)}, not an ahl_plugins.FeatureSpec")
        return spec

    spec = fitted(extractor)
    checker.ok("extractor.spec")

    def extract(extractor: Any, inputs: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad(), checker.guard("extractor.output", f"extract({_describe(inputs)})"):
            return extractor.extract(inputs)

    original = batch.clone()
    features = extract(extractor, batch)
    if not isinstance(features, (list, tuple)) or len(features) != spec.n_scales:
        raise checker.fail(
            "extractor.output",
            f"extract returned {_describe(features)}; expected a list of {spec.n_scales} tensors (one per scale)",
        )
    for i, (f, channels) in enumerate(zip(features, spec.channels, strict=True)):
        dims = 4 if spec.kind == "map" else 2
        if not isinstance(f, torch.Tensor) or f.dim() != dims or f.shape[0] != batch_size or f.shape[1] != channels:
            expected = f"{batch_size}×{channels}×H×W" if dims == 4 else f"{batch_size}×{channels}"
            raise checker.fail(
                "extractor.output", f"scale {i} is {_describe(f)}; spec says {spec}, so expected {expected}"
            )
        if not f.is_floating_point() or not _all_finite(f):
            raise checker.fail(
                "extractor.output", f"scale {i} must be finite floats, got {f.dtype} with non-finite values"
            )
    checker.ok("extractor.output")

    with checker.guard("extractor.fingerprint", "fingerprint()"):
        prints = (extractor.fingerprint(), extractor.fingerprint())
    if not isinstance(prints[0], str) or not prints[0]:
        raise checker.fail(
            "extractor.fingerprint", f"fingerprint() returned {prints[0]!r}; expected a non-empty string"
        )
    if prints[0] != prints[1]:
        raise checker.fail(
            "extractor.fingerprint", f"fingerprint() changed between two calls: {prints[0]!r} then {prints[1]!r}"
        )
    twin = build()
    fitted(twin)
    with checker.guard("extractor.fingerprint", "fingerprint() of a second build"):
        twin_print = twin.fingerprint()
    twin_features = extract(twin, batch)
    same = all(torch.allclose(a, b, rtol=RTOL, atol=ATOL) for a, b in zip(features, twin_features, strict=True))
    if twin_print == prints[0] and not same:
        raise checker.fail(
            "extractor.fingerprint",
            "two builds with the same options and seed have the same fingerprint but give different features; "
            "the feature cache would serve wrong features. Put everything that changes the output in the fingerprint",
        )
    if twin_print != prints[0] and same:
        raise checker.fail(
            "extractor.fingerprint",
            f"two identical builds have different fingerprints ({prints[0]!r}, {twin_print!r}); the cache would never "
            "hit. Build the fingerprint from the weights' identity and settings, not from object ids or times",
        )
    checker.ok("extractor.fingerprint")

    if not torch.equal(batch, original):
        raise checker.fail("extractor.frozen", "extract modified its input batch in place")
    again = extract(extractor, batch)
    if not all(torch.allclose(a, b, rtol=RTOL, atol=ATOL) for a, b in zip(features, again, strict=True)):
        raise checker.fail(
            "extractor.frozen",
            "extracting the same batch twice gave different features (dropout or train-mode BatchNorm?)",
        )
    alone = extract(extractor, batch[-1:])
    for i, (a, b) in enumerate(zip(features, alone, strict=True)):
        if not torch.allclose(a[-1:], b, rtol=1e-3, atol=1e-4):
            raise checker.fail(
                "extractor.frozen",
                f"scale {i}: a sample's features differ when extracted alone and within a batch (max |diff| "
                f"{_max_diff(a[-1:], b):.3g}); put the backbone in eval mode (BatchNorm running statistics)",
            )
    checker.ok("extractor.frozen")
    return checker.report


# -- pseudo-anomaly generators -------------------------------------------------------------
def check_generator(
    name: str,
    manager: PluginManager | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    image_size: int = IMAGE_SIZE_FOR_GENERATORS,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ContractReport:
    """Check a registered pseudo-anomaly generator on images or vectors (its ``domain``)."""
    __tracebackhide__ = True
    manager = _manager(manager)
    entry = _entry(manager, "pseudo_anomaly_generators", name)
    checker = _Checker(entry)
    device = torch.device(device)
    opts = _parse_options(checker, entry, options, "generator.build")
    with checker.guard("generator.build", "factory(options)"):
        generator_obj = entry.factory(opts)
    if not callable(getattr(generator_obj, "generate", None)):
        raise checker.fail(
            "generator.build", f"the factory returned {_describe(generator_obj)}, which has no generate()"
        )
    domain = getattr(generator_obj, "domain", None)
    if domain not in ("image", "vector"):
        raise checker.fail("generator.build", f"domain must be 'image' or 'vector', got {domain!r}")
    if hasattr(generator_obj, "fingerprint"):
        with checker.guard("generator.build", "fingerprint()"):
            fingerprint = generator_obj.fingerprint()
        if not isinstance(fingerprint, str) or not fingerprint:
            raise checker.fail(
                "generator.build", f"fingerprint() returned {fingerprint!r}; expected a non-empty string"
            )
    checker.ok("generator.build")

    data = _generator(seed, torch.device("cpu"))
    if domain == "image":
        x = torch.rand(4, 3, image_size, image_size, generator=data).to(device)
        pool = torch.rand(6, 3, image_size, image_size, generator=data).to(device)
        mask_shape = (4, 1, image_size, image_size)
    else:
        x = torch.randn(4, VECTOR_DIM, generator=data).to(device)
        pool = torch.randn(8, VECTOR_DIM, generator=data).to(device)
        mask_shape = (4, VECTOR_DIM)
    x_copy, pool_copy = x.clone(), pool.clone()

    def generate(global_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        with seeded(global_seed, device), checker.guard("generator.output", "generate(x, pool, generator)"):
            result = generator_obj.generate(x, pool, _generator(seed, device))
        if not isinstance(result, tuple) or len(result) != 2:
            raise checker.fail("generator.output", f"generate returned {_describe(result)}; expected (anomalies, mask)")
        return result

    out, mask = generate(1)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
        raise checker.fail(
            "generator.output", f"anomalies are {_describe(out)}; expected {_describe(x)} like the input"
        )
    if not _all_finite(out):
        raise checker.fail("generator.output", "anomalies have non-finite values")
    if domain == "image" and (float(out.min()) < -1e-6 or float(out.max()) > 1 + 1e-6):
        raise checker.fail(
            "generator.output",
            f"image anomalies range over [{float(out.min()):.3g}, {float(out.max()):.3g}]; they must stay in [0, 1] "
            "(extractors normalise afterwards)",
        )
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != mask_shape or mask.dtype != torch.bool:
        raise checker.fail(
            "generator.output", f"mask is {_describe(mask)}; expected a torch.bool tensor of shape {mask_shape}"
        )
    checker.ok("generator.output")

    differs = (out != x).any(dim=1, keepdim=True) if domain == "image" else out != x
    outside = differs & ~mask
    if bool(outside.any()):
        raise checker.fail(
            "generator.mask",
            f"the output differs from x at {int(outside.sum())} position(s) where mask is false; mask must be true "
            "wherever the output changed",
        )
    unchanged = [i for i in range(len(x)) if not bool(differs[i].any())]
    if unchanged:
        raise checker.fail(
            "generator.mask", f"sample(s) {unchanged} came back unchanged; a pseudo anomaly must differ from its normal"
        )
    checker.ok("generator.mask")

    if not torch.equal(x, x_copy) or not torch.equal(pool, pool_copy):
        raise checker.fail("generator.determinism", "generate modified x or pool in place; work on copies")
    out2, mask2 = generate(2)
    if not (torch.equal(out, out2) and torch.equal(mask, mask2)):
        raise checker.fail(
            "generator.determinism",
            "the same seeded generator gave different anomalies under another global RNG state; draw every random "
            "number from the generator argument (torch.rand(..., generator=generator))",
        )
    checker.ok("generator.determinism")
    return checker.report


# -- estimators ------------------------------------------------------------------------------
def _estimator_inputs(n_tasks: int, epochs: int, seed: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    data = _generator(seed + n_tasks * 31 + epochs, torch.device("cpu"))
    history = torch.rand(epochs, ESTIMATOR_SAMPLES, n_tasks, generator=data)
    targets = (torch.arange(ESTIMATOR_SAMPLES) >= ESTIMATOR_SAMPLES - 6).float()
    error_weights = torch.where(targets[:, None] > 0, 1.0, 0.5).repeat(1, n_tasks)
    per_task = max(1, (ESTIMATOR_SAMPLES - 6) // n_tasks)
    for task in range(n_tasks):  # each base model trained on a slice of the normals
        error_weights[task * per_task : (task + 1) * per_task, task] = 0.0
    return history.to(device), targets.to(device), error_weights.to(device)


def check_estimator(
    name: str,
    manager: PluginManager | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ContractReport:
    """Check a registered generalizability estimator for several task counts and history lengths."""
    __tracebackhide__ = True
    manager = _manager(manager)
    entry = _entry(manager, "estimators", name)
    checker = _Checker(entry)
    device = torch.device(device)
    opts = _parse_options(checker, entry, options, "estimator.build")

    def weights(n_tasks: int, epochs: int) -> torch.Tensor:
        with seeded(seed, device):
            with checker.guard("estimator.build", f"factory({n_tasks}, options)"):
                estimator = entry.factory(n_tasks, opts)
            if not callable(getattr(estimator, "task_weights", None)):
                raise checker.fail(
                    "estimator.build", f"the factory returned {_describe(estimator)}, which has no task_weights()"
                )
            if hasattr(estimator, "to"):
                estimator = estimator.to(device) or estimator
            history, targets, error_weights = _estimator_inputs(n_tasks, epochs, seed, device)
            with checker.guard(
                "estimator.weights", f"task_weights(history {epochs}×{ESTIMATOR_SAMPLES}×{n_tasks}, ...)"
            ):
                return estimator.task_weights(history, targets, error_weights)

    for i, (n_tasks, epochs) in enumerate(ESTIMATOR_CASES):
        w = weights(n_tasks, epochs)
        checker.ok("estimator.build")
        where = f"with T = {n_tasks} tasks and {epochs} epochs of history"
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (n_tasks,):
            raise checker.fail(
                "estimator.weights", f"{where} task_weights returned {_describe(w)}; expected shape ({n_tasks},)"
            )
        if not w.is_floating_point() or not _all_finite(w) or bool((w < 0).any()):
            raise checker.fail(
                "estimator.weights", f"{where} the weights must be finite and non-negative, got {w.tolist()}"
            )
        if abs(float(w.sum()) - 1.0) > 1e-4:
            raise checker.fail("estimator.weights", f"{where} the weights sum to {float(w.sum()):.6g}, not 1")
        if i > 0:
            continue
        again = weights(n_tasks, epochs)
        if not torch.allclose(w, again, rtol=1e-5, atol=1e-6):
            raise checker.fail(
                "estimator.determinism",
                f"{where} two estimators built and run under the same seed gave {w.tolist()} and {again.tolist()}",
            )
    checker.ok("estimator.weights")
    checker.ok("estimator.determinism")
    return checker.report


# -- dispatch -------------------------------------------------------------------------------
_CHECKS: dict[str, Callable[..., ContractReport]] = {
    "scorers": check_scorer,
    "losses": check_loss,
    "models": check_model,
    "feature_extractors": check_extractor,
    "pseudo_anomaly_generators": check_generator,
    "estimators": check_estimator,
}


def check_component(kind: str, name: str, manager: PluginManager | None = None, **options: Any) -> ContractReport:
    """Run the checks for one component; ``kind`` is a registry key or a singular such as 'scorer'."""
    __tracebackhide__ = True
    return _CHECKS[_kind_key(kind)](name, manager, **options)


def components_of(plugin: str, manager: PluginManager | None = None) -> list[tuple[str, str]]:
    """``(kind, name)`` of every component ``plugin`` registered, in checking order.

    Meant for ``pytest.mark.parametrize``; raises a clear error when the plugin
    is not installed, failed to load, or was disabled.
    """
    manager = _manager(manager)
    record = manager.records.get(plugin)
    if record is None:
        names = ", ".join(sorted(manager.records)) or "none"
        raise UnknownComponentError(
            f"no plugin named {plugin!r} is loaded (loaded: {names}); install it (pip install -e .) so its "
            "'ahl_plugins' entry point is found, or check the entry point's name"
        )
    if record.disabled:
        raise UnknownComponentError(f"plugin {plugin!r} is disabled by AHL_DISABLED_PLUGINS")
    if record.error:
        raise UnknownComponentError(f"plugin {plugin!r} failed to load: {record.error}")
    return [(kind, name) for kind in _CHECK_ORDER for name in sorted(record.components.get(kind, ()))]


def parametrize_components(plugin: str, manager: PluginManager | None = None) -> Any:
    """``@parametrize_components("my_plugin")``: a pytest parametrize over (kind, name) with readable ids."""
    import pytest

    cases = components_of(plugin, manager)
    return pytest.mark.parametrize(("kind", "name"), cases, ids=[f"{KINDS_BY_KEY[k].label}:{n}" for k, n in cases])


def resolve_targets(name: str, manager: PluginManager | None = None, kind: str | None = None) -> list[tuple[str, str]]:
    """What ``ahl plugins check NAME`` checks: a plugin's components, or the components called NAME."""
    manager = _manager(manager)
    if kind is not None:
        key = _kind_key(kind)
        manager.get(key, name)
        return [(key, name)]
    if name in manager.records:
        return components_of(name, manager)
    found = [(k, name) for k in _CHECK_ORDER if name in manager.registry(k)]
    if found:
        return found
    import difflib

    candidates = set(manager.records) | {n for k in KINDS for n in manager.registry(k.key).names()}
    close = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownComponentError(
        f"{name!r} is neither a loaded plugin nor a registered component.{hint} See `ahl plugins list --all`."
    )


def run_checks(
    targets: Sequence[tuple[str, str]], manager: PluginManager | None = None, **options: Any
) -> list[ContractReport]:
    """Check every target and collect the reports; never raises ContractError."""
    manager = _manager(manager)
    reports = []
    for kind, name in targets:
        key = _kind_key(kind)
        try:
            reports.append(check_component(key, name, manager, **options))
        except ContractError as exc:
            entry = manager.get(key, name)
            reports.append(ContractReport(key, name, entry.plugin, list(exc.passed), [], exc))
        except Exception as exc:  # the kit itself, or a component outside a guarded call
            entry = manager.get(key, name)
            error = ContractError(
                "unexpected-error",
                f"checking stopped on {type(exc).__name__}: {exc}; run check_component({key!r}, {name!r}) "
                "in Python for the traceback",
                kind=key,
                name=name,
                plugin=entry.plugin,
            )
            reports.append(ContractReport(key, name, entry.plugin, [], [], error))
    return reports


def check_all(plugin: str, manager: PluginManager | None = None, **options: Any) -> list[ContractReport]:
    """Check every component ``plugin`` registered; raise one ContractError listing all failures."""
    __tracebackhide__ = True
    reports = run_checks(components_of(plugin, manager), manager, **options)
    failures = [r.error for r in reports if r.error is not None]
    if len(failures) == 1:
        raise failures[0]
    if failures:
        first = failures[0]
        raise ContractError(
            first.requirement, first.detail, kind=first.kind, name=first.name, plugin=first.plugin, failures=failures
        )
    return reports
