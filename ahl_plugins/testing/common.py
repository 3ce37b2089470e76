"""Shared pieces of the contract kit: errors and reports, synthetic inputs, small helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ahl_plugins.contracts import LABEL_NORMAL, LABEL_PSEUDO, LABEL_SEEN, ComponentEntry, FeatureSpec, ModelSpec
from ahl_plugins.plugins import PluginManager, get_manager
from ahl_plugins.registry import KINDS_BY_KEY
from ahl_plugins.testing.requirements import REQUIREMENTS

if TYPE_CHECKING:
    from ahl_plugins.contracts import ScorerModule

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


KIND_ALIASES: dict[str, str] = {
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
CHECK_ORDER = ("feature_extractors", "pseudo_anomaly_generators", "estimators", "losses", "scorers", "models")


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


class Checker:
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


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def loaded_manager(manager: PluginManager | None) -> PluginManager:
    return (manager or get_manager()).load()


def kind_key(kind: str) -> str:
    key = KIND_ALIASES.get(kind, kind)
    if key not in KINDS_BY_KEY:
        valid = ", ".join(sorted(set(KINDS_BY_KEY) | set(KIND_ALIASES)))
        raise ValueError(f"unknown component kind {kind!r}; valid kinds: {valid}")
    return key


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max()) if a.numel() else 0.0


def describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def all_finite(t: torch.Tensor) -> bool:
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


def make_labels(
    groups: Sequence[int] = (LABEL_NORMAL, LABEL_SEEN, LABEL_PSEUDO), per_label: int = PER_LABEL
) -> torch.Tensor:
    return torch.tensor([g for g in groups for _ in range(per_label)], dtype=torch.long)


def hidden_tensors(module: nn.Module, include_registered: bool = False) -> list[str]:
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


def surrogate_loss(scorer: ScorerModule) -> Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """A loss for a scorer checked on its own: separate combined scores, touch every head."""

    def loss(heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        sign = torch.where(labels > LABEL_NORMAL, -1.0, 1.0).to(next(iter(heads.values())).dtype)
        total = (sign * scorer.combine(heads)).mean()
        for value in heads.values():
            total = total + 1e-3 * value.mean()
        return total

    return loss


# -- registry look-ups ----------------------------------------------------------------
def entry_of(manager: PluginManager, kind: str, name: str) -> ComponentEntry:
    return manager.get(kind, name)


def models_using(manager: PluginManager, field_name: str, component: str) -> list[tuple[str, ModelSpec]]:
    return [(e.name, e.factory) for e in manager.registry("models") if getattr(e.factory, field_name) == component]


def open_check(
    manager: PluginManager | None, kind: str, name: str, options: Mapping[str, Any] | None, requirement: str
) -> tuple[PluginManager, ComponentEntry, Checker, Any]:
    """How every ``check_*`` starts: the loaded manager, the entry, its checker and its validated options."""
    manager = loaded_manager(manager)
    entry = entry_of(manager, kind, name)
    checker = Checker(entry)
    return manager, entry, checker, parse_options(checker, entry, options, requirement)


def parse_options(checker: Checker, entry: ComponentEntry, values: Mapping[str, Any] | None, requirement: str) -> Any:
    try:
        return entry.parse_options(values)
    except Exception as exc:
        hint = (
            ""
            if values
            else " (the kit builds components with default options: give every option a default, or pass options=...)"
        )
        raise checker.fail(requirement, f"options do not validate{hint}: {exc}") from exc


def declared_kinds(checker: Checker, obj: Any, requirement: str = "scorer.supported-kinds") -> tuple[str, ...] | None:
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


def kinds_to_check(checker: Checker, factory: Any, kinds: Sequence[str] | None) -> list[str]:
    for kind in kinds or ():
        if kind not in FEATURE_KINDS:
            raise ValueError(f"feature kind must be 'map' or 'vector', got {kind!r}")
    supported = declared_kinds(checker, factory)
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
