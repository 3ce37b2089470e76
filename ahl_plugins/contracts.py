"""What a registered component must provide.

Kept free of a module-level ``torch`` import so that listing plugins stays
fast; the checks import torch only when a component is actually built.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel

    class ScorerModule(torch.nn.Module):
        """Type checking only: a built scorer as the framework holds it, an ``nn.Module`` with the
        :class:`Scorer` members (Python's typing has no "Module and Scorer" intersection). The optional
        members below exist only on scorers that have them: call them after a ``hasattr`` check."""

        head_names: tuple[str, ...]

        def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor: ...
        def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None: ...
        def head_maps(self, features: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]: ...
        def fixed_heads(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]: ...
        def calibrate(self, normal_features: Sequence[torch.Tensor]) -> None: ...
        def task_buffers(self, support_normals: torch.Tensor) -> dict[str, torch.Tensor]: ...

        position_heads: tuple[str, ...]


LABEL_NORMAL = 0
LABEL_SEEN = 1
LABEL_PSEUDO = 2

InputKind = Literal["image", "vector"]
FeatureKind = Literal["map", "vector"]


class Register(Protocol):
    """The callback a register hook receives."""

    def __call__(self, name: str, factory: Any, /, **metadata: Any) -> None: ...


@dataclass(frozen=True)
class FeatureSpec:
    """Shape of an extractor's output: one entry of ``channels`` per scale."""

    kind: FeatureKind
    channels: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.kind not in ("map", "vector"):
            raise ValueError(f"FeatureSpec.kind must be 'map' or 'vector', got {self.kind!r}")
        if not self.channels or any(int(c) <= 0 for c in self.channels):
            raise ValueError(f"FeatureSpec.channels must be positive per scale, got {self.channels!r}")

    @property
    def n_scales(self) -> int:
        return len(self.channels)


class FeatureExtractor(ABC):
    """A frozen map from prepared inputs to per-scale features.

    ``input_kind`` says what it eats: ``"image"`` batches are ``B×3×S×S`` floats
    in ``[0, 1]`` with ``S = image_size`` (normalisation is the extractor's
    job, so real and pseudo anomalies are normalised alike); ``"vector"``
    batches are ``B×D`` floats.
    """

    input_kind: InputKind = "image"
    image_size: int | None = None

    @property
    @abstractmethod
    def spec(self) -> FeatureSpec: ...

    @abstractmethod
    def fingerprint(self) -> str:
        """A string that changes whenever the output for the same input could."""

    @abstractmethod
    def extract(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Features of one batch, one tensor per scale, on the batch's device."""

    def fit(self, train_inputs: torch.Tensor) -> None:  # noqa: B027 - optional hook
        """Fit input statistics on training rows (e.g. standardisation); default: nothing."""

    def to(self, device: torch.device | str) -> FeatureExtractor:
        return self

    def fitted_state(self) -> dict[str, torch.Tensor]:
        """Tensors learnt by :meth:`fit`, saved with a detector; default: none."""
        return {}

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`fitted_state` returned."""


@runtime_checkable
class Scorer(Protocol):
    """Scoring heads: an ``nn.Module`` whose whole state is parameters and buffers.

    Optional, not Protocol members, so scorers without them still match:

    - ``head_maps(features) -> list[dict[str, Tensor]]``: per scale each head's
      score per position (``B×h×w``, or ``(B,)`` for a head without positions),
      for anomaly maps (``ahl_plugins.maps``; docs/plugins.md);
    - ``calibrate(normal_features)``: called after training, base loop, AHL and
      fine-tuning alike, to put the heads on a common scale (docs/models.md);
    - ``reference_normals: int``: how many training normals ``prepare`` keeps.
      End-to-end fine-tuning computes those normals' features itself, through
      the current backbone, and passes this many (else ``n_references``, else 32);
    - ``task_buffers(support_normals) -> dict[str, Tensor]``: for AHL's
      ``task_references="support"``, per-task values (``T×...``) of buffers that
      encode the training normals, given each task's support normals (indices
      into the normals ``prepare`` saw). DRA masks its reference bank to them,
      so a task's query normals are judged against references they were not
      drawn from. Return ``{}`` to leave a task set unrestricted.
    - ``fixed_heads(features) -> dict[str, Tensor]``: the heads that read no
      parameter and no per-task buffer (``(B,)`` each; DRA's patch distance).
      AHL computes them once per training sample and passes them back as
      ``forward(features, fixed=...)`` when it scores every task's base model,
      instead of one search per task and epoch (docs/models.md).
    - ``position_heads: tuple[str, ...]``: names of per-position head maps the scorer adds to its dict when
      called as ``forward(features, positions=True)``, each ``B×h×w`` (its own ``h×w`` per name, e.g. one
      per scale). Trainers ask for them only when the loss declares :attr:`PositionLoss.uses_position_labels`,
      and pass per-position labels at each map's resolution under the same names (docs/plugins.md, "Pixel
      masks"). Without the keyword, ``forward`` returns only the ``(B,)`` heads, as every scorer does.
    """

    head_names: tuple[str, ...]

    def __call__(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One anomaly score per sample, higher = more anomalous."""
        ...

    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        """Called once before training with the training normals' features (e.g. DRA's
        reference normals); must only set parameters or buffers, drawing randomness from
        ``generator``."""
        ...


Loss = Callable[["Mapping[str, torch.Tensor]", "torch.Tensor"], "torch.Tensor"]

#: a per-position label of a labelled anomaly without a ground-truth mask: unknown (NaN), so the loss leaves
#: the position to what the image label teaches (e.g. top-k MIL)
POSITION_UNKNOWN = float("nan")


@runtime_checkable
class PositionLoss(Protocol):
    """A loss that also takes per-position labels: it says so with ``uses_position_labels = True``.

    Called as ``loss(heads, labels, positions=...)``: ``heads`` holds the scorer's ``(B,)`` heads plus its
    ``position_heads`` maps (``B×h×w``); ``positions`` maps each of those names to a float ``B×h×w`` target
    at that map's resolution: 1 where the sample's mask (a labelled anomaly's ground truth, a pseudo
    anomaly's generator mask) covers any part of the position's cell (max pooling), 0 elsewhere and at every
    position of a normal, NaN (:data:`POSITION_UNKNOWN`) at every position of an anomaly without a mask.
    ``positions`` is empty when the scorer has no ``position_heads``, and during end-to-end fine-tuning.
    A loss without the attribute (or with it False) is called exactly as :data:`Loss`; the attribute may be
    set per instance (e.g. only when an option turns per-position supervision on).
    """

    uses_position_labels: bool

    def __call__(
        self,
        heads: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        *,
        positions: Mapping[str, torch.Tensor],
    ) -> torch.Tensor: ...


def takes_position_labels(loss: object) -> bool:
    """Whether ``loss`` declared per-position labels (``uses_position_labels`` is exactly True)."""
    return getattr(loss, "uses_position_labels", False) is True


class PseudoAnomalyGenerator(ABC):
    """Makes label-2 samples from normal ones.

    ``default``: whether the detector uses this generator when the user names
    none (``pseudo_anomalies=None``); an opt-in generator sets it to False.
    """

    domain: InputKind = "image"
    default: bool = True

    @abstractmethod
    def generate(
        self, x: torch.Tensor, pool: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(anomalies, mask)``.

        ``x``: normals to corrupt (images ``B×3×S×S`` in ``[0, 1]`` or vectors
        ``B×D``); ``pool``: other training normals to borrow content from;
        ``mask``: bool, ``B×1×S×S`` (images) or ``B×D`` (vectors), true where
        the output differs from ``x``.
        """

    def fingerprint(self) -> str:
        return type(self).__qualname__


class GeneralizabilityEstimator(ABC):
    """Weights the AHL tasks by how well each base model generalizes."""

    @abstractmethod
    def task_weights(self, history: torch.Tensor, targets: torch.Tensor, error_weights: torch.Tensor) -> torch.Tensor:
        """Return ``(T,)`` weights summing to 1.

        An estimator may also take a keyword ``reference``: the unified
        model's normalised scores ``(N,)`` of the same samples this epoch; the
        learner passes it when the signature names it (SGE uses it to judge
        each base model relative to the model it was adapted from).

        ``history``: ``E×N×T`` scores in ``[0, 1]`` of the T base models on N
        training samples over the last E epochs (oldest first); ``targets``:
        ``(N,)`` 0 normal / 1 anomaly; ``error_weights``: ``N×T``, the weight
        of sample j in base model i's error (0 where model i trained on it).
        """


@dataclass(frozen=True)
class ModelSpec:
    """A named OSAD model: components by registry name plus default options."""

    scorer: str
    loss: str
    image_extractor: str = "resnet18"
    vector_extractor: str = "identity"
    scorer_options: Mapping[str, Any] = field(default_factory=dict)
    loss_options: Mapping[str, Any] = field(default_factory=dict)
    train_options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class ComponentEntry:
    """One registered component, with who provided it: the registry's record.

    ``label`` is what to call one in messages ("scorer", "feature extractor"); the registry sets it.
    """

    kind: str
    name: str
    factory: Any
    plugin: str
    options: type[BaseModel] | None = None
    description: str = ""
    label: str = ""

    def parse_options(self, values: Mapping[str, Any] | BaseModel | None = None) -> BaseModel | None:
        """Validate user options against the component's pydantic model (parsed options pass through)."""
        from pydantic import BaseModel, ValidationError

        from ahl_plugins.errors import InvalidOptionsError

        if isinstance(values, BaseModel):
            return values
        label = self.label or self.kind
        values = dict(values or {})
        if self.options is None:
            if values:
                raise InvalidOptionsError(
                    f"{label} {self.name!r} (from plugin {self.plugin!r}) takes no options, "
                    f"got: {', '.join(sorted(values))}"
                )
            return None
        try:
            return self.options(**values)
        except ValidationError as exc:
            valid = ", ".join(self.options.model_fields) or "none"
            raise InvalidOptionsError(
                f"invalid options for {label} {self.name!r} (from plugin {self.plugin!r}); "
                f"valid options: {valid}\n{exc}"
            ) from None

    def build(self, *args: Any, options: Mapping[str, Any] | BaseModel | None = None) -> Any:
        """The component: ``factory(*args, parsed options)``; ``args`` are the kind's leading arguments
        (a scorer's ``FeatureSpec``, an estimator's task count; none for the other kinds)."""
        return self.factory(*args, self.parse_options(options))
