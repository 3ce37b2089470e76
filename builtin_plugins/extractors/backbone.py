"""What every frozen CNN extractor shares: weights loading and the image pyramid.

Weights come from three places (a pretrained set, a seeded random init, or a
local state-dict file) and each gets an identity string that goes into the
extractor's fingerprint, so cached features never outlive the weights that
made them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ahl_plugins.contracts import FeatureExtractor, FeatureSpec
from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.features.module_extractor import FINETUNED_PREFIX, weights_fingerprint

FINGERPRINT_VERSION = "v1"
_SHOW_KEYS = 8


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def local_weights_path(weights: str, help_text: str) -> Path:
    """The file named by a ``weights=`` option, with an error that says what else is allowed."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise InvalidOptionsError(f"weights file not found: {path}. weights must be {help_text}")
    return path.resolve()


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a ``torch.save`` file (tensors only)."""
    state: object  # whatever the file holds, checked below
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch/safetensors raise many kinds for a bad file
        raise DataError(
            f"cannot read weights file {path}: {type(exc).__name__}: {exc}. It must be a state dict saved with "
            "torch.save(model.state_dict(), path) or safetensors.torch.save_file (whole pickled models are refused "
            "because they can run code on load)"
        ) from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"weights file {path} holds a {type(state).__name__}, not a state dict of tensors")
    return dict(state)


def _strip_prefix(state: dict[str, torch.Tensor], expected: Iterable[str]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix (``module.``, ``backbone.``, ...) when that is all that keeps keys from matching."""
    expected = set(expected)
    if expected & set(state):
        return state
    anchor = sorted(expected)[0]
    for key in state:
        if key.endswith("." + anchor):
            prefix = key[: -len(anchor)]
            stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if expected & set(stripped):
                return stripped
    return state


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOW_KEYS])
    return shown + (f" (and {len(keys) - _SHOW_KEYS} more)" if len(keys) > _SHOW_KEYS else "")


def apply_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, architecture: str, ignorable: Iterable[str] = ()
) -> None:
    """Load ``state`` into ``model`` strictly, or say exactly which keys do not fit.

    ``ignorable`` are keys of the full architecture that this extractor
    dropped (a classifier, stages after the deepest tap): a file may hold them.
    """
    own = model.state_dict()
    state = _strip_prefix(state, own)
    optional = {k for k in own if k.endswith("num_batches_tracked")}
    missing = set(own) - set(state) - optional
    unexpected = set(state) - set(own) - set(ignorable)
    mismatched = {
        k: (tuple(state[k].shape), tuple(own[k].shape)) for k in set(own) & set(state) if state[k].shape != own[k].shape
    }
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_listing(unexpected)}")
        if mismatched:
            shown = sorted(mismatched)[:_SHOW_KEYS]
            parts.append(
                "shape mismatches (file vs model): "
                + ", ".join(f"{k} {mismatched[k][0]} vs {mismatched[k][1]}" for k in shown)
                + (f" (and {len(mismatched) - len(shown)} more)" if len(mismatched) > len(shown) else "")
            )
        raise DataError(
            f"weights {source} do not match the {architecture} architecture; " + "; ".join(parts) + ". "
            "Pass a state dict saved from the same architecture (torch.save(model.state_dict(), path))"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def build_seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a module with a deterministic random init, leaving the global RNG untouched."""
    from ahl_plugins.seeding import seeded

    with seeded(seed):
        return build()


def random_weights_identity(seed: int) -> str:
    # The init scheme belongs to the library version, so that is part of the identity.
    return f"none:seed={seed}:torch={torch.__version__.split('+')[0]}"


class PyramidExtractor(FeatureExtractor):
    """A frozen CNN run on an image pyramid: one map per (scale, tap).

    Outputs are ordered scale-major: ``[s0·tap0, s0·tap1, ..., s1·tap0, ...]``
    where level ``l`` sees the ``S×S`` batch resized to ``S/2^l`` (antialiased),
    as in the DevNet/DRA two-scale pyramid (448 and 224 by default).
    """

    input_kind = "image"

    def __init__(
        self,
        name: str,
        model: nn.Module,
        tap_names: tuple[str, ...],
        tap_channels: tuple[int, ...],
        weights_identity: str,
        image_size: int,
        scales: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        self.name = name
        self.model = model.eval().requires_grad_(False)
        self.tap_names = tap_names
        self.tap_channels = tap_channels
        self.weights_identity = weights_identity
        self.image_size = int(image_size)
        self.scales = int(scales)
        if self.image_size // 2 ** (self.scales - 1) < 16:
            raise InvalidOptionsError(
                f"{name}: image_size {image_size} with {scales} scales makes a level smaller than 16 px; "
                "raise image_size or lower scales"
            )
        self.mean, self.std = tuple(mean), tuple(std)
        self._device = torch.device("cpu")
        self.finetuned = False

    # -- subclass hook ---------------------------------------------------------------
    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The tapped maps of one normalised batch, in ``tap_names`` order."""
        raise NotImplementedError

    # -- FeatureExtractor ------------------------------------------------------------
    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec("map", self.tap_channels * self.scales)

    def level_sizes(self) -> tuple[int, ...]:
        return tuple(self.image_size // 2**level for level in range(self.scales))

    def fingerprint(self) -> str:
        return "|".join(
            [
                self.name,
                f"weights={self.weights_identity}",
                f"taps={','.join(self.tap_names)}",
                f"size={self.image_size}",
                f"scales={self.scales}",
                f"norm=mean{self.mean}std{self.std}",
                FINGERPRINT_VERSION,
            ]
        )

    def forward_features(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """The pyramid's maps with autograd on (what backbone fine-tuning differentiates)."""
        if batch.dim() != 4 or batch.shape[1] != 3:
            raise DataError(f"{self.name} takes B×3×S×S image batches in [0, 1], got shape {tuple(batch.shape)}")
        batch = batch.to(self._device, torch.float32)
        mean = torch.tensor(self.mean, device=batch.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, 3, 1, 1)
        x = (batch - mean) / std
        outputs: list[torch.Tensor] = []
        for size in self.level_sizes():
            level = x
            if tuple(x.shape[-2:]) != (size, size):
                level = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            outputs.extend(t.float() for t in self._taps(level))
        return outputs

    def extract(self, batch: torch.Tensor) -> list[torch.Tensor]:
        source_device = batch.device
        with torch.inference_mode():
            outputs = self.forward_features(batch)
        # Inference tensors cannot be saved for backward; heads trained on these need ordinary ones.
        return [t.clone().to(source_device) for t in outputs]

    # -- fine-tuning (ahl_plugins.training.finetune) ----------------------------------
    def trainable_module(self) -> nn.Module:
        """The network whose weights backbone fine-tuning trains."""
        return self.model

    def mark_finetuned(self, fingerprint: str) -> None:
        """After fine-tuning: the weights are now their own identity, and they are saved with a detector."""
        self.weights_identity = f"finetuned:{fingerprint}"
        self.finetuned = True

    def fitted_state(self) -> dict[str, torch.Tensor]:
        if not self.finetuned:
            return {}
        return {f"{FINETUNED_PREFIX}{k}": v.detach() for k, v in self.model.state_dict().items()}

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:
        own = {k[len(FINETUNED_PREFIX) :]: v for k, v in state.items() if k.startswith(FINETUNED_PREFIX)}
        if not own:
            return
        apply_state_dict(self.model, own, "saved with the detector (fine-tuned backbone)", self.name)
        self.mark_finetuned(weights_fingerprint(self.model))

    def to(self, device: torch.device | str) -> PyramidExtractor:
        self._device = torch.device(device)
        self.model.to(self._device)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.fingerprint()})"
