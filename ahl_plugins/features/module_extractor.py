"""Any ``nn.Module`` (or TorchScript file) as a feature extractor.

This is how a user wraps a network they already trained end to end (e.g. a
DevNet or DRA backbone trained elsewhere) and runs AHL on its frozen
features, which is the paper's own pipeline. ``layers`` names what to read:
keys of a dict the module returns (e.g. a scripted torchvision
``create_feature_extractor``), or, for a plain ``nn.Module``, submodules whose
outputs are captured by forward hooks. Without ``layers`` the module's output
(one tensor or a list of per-scale tensors) is the features.

TorchScript archives are read with ``torch.jit.load``, which rebuilds the
compiled code and tensors without unpickling arbitrary Python objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeGuard

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ahl_plugins.contracts import FeatureExtractor, FeatureKind, FeatureSpec, InputKind
from ahl_plugins.errors import AHLError, DataError, InvalidOptionsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".jit")
#: Key prefix of a fine-tuned network's weights in a saved detector's extractor.safetensors.
FINETUNED_PREFIX = "backbone."


class ModuleExtractorOptions(BaseModel):
    """How to read a user's module: input size, normalisation and the layer(s) to tap."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(224, ge=16, le=4096, description="input side S of the square images the module gets")
    layers: tuple[str, ...] | None = Field(
        None, description="outputs to read: keys of a dict output, or submodule names (plain nn.Module only)"
    )
    mean: tuple[float, float, float] | None = Field(IMAGENET_MEAN, description="per-channel mean; null = none")
    std: tuple[float, float, float] | None = Field(IMAGENET_STD, description="per-channel std; null = none")

    @field_validator("layers", mode="before")
    @classmethod
    def _one_layer(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value


def is_torchscript_path(value: object) -> TypeGuard[str | Path]:
    """Whether an ``extractor=`` value names a TorchScript file rather than a registered extractor."""
    return isinstance(value, (str, Path)) and str(value).endswith(TORCHSCRIPT_SUFFIXES) and Path(value).is_file()


def weights_fingerprint(module: torch.nn.Module) -> str:
    """Hash of a network's weights and buffers: the identity of the features it makes (fine-tuned or not)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


def _freeze(module: torch.nn.Module) -> torch.nn.Module:
    # ScriptModules refuse ``requires_grad_``; setting each parameter works for both kinds.
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


class ModuleExtractor(FeatureExtractor):
    """Wraps a module; see the module docstring for what ``layers`` reads."""

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        input_kind: InputKind = "image",
        image_size: int = 224,
        mean: tuple[float, ...] | None = IMAGENET_MEAN,
        std: tuple[float, ...] | None = IMAGENET_STD,
        name: str | None = None,
        input_dim: int | None = None,
        layers: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(module, torch.nn.Module):
            raise AHLError(f"extractor must be a registered name or a torch.nn.Module, got {type(module).__name__}")
        self.module = _freeze(module)
        self.input_kind = input_kind
        self.image_size = image_size if input_kind == "image" else None
        self.mean, self.std = mean, std
        self.name = name or type(module).__name__
        self.input_dim = input_dim
        self.layers = tuple(layers) if layers else None
        self.scripted = isinstance(module, torch.jit.ScriptModule)
        self.finetuned = False
        self._spec: FeatureSpec | None = None
        self._check_layers()

    @classmethod
    def from_options(
        cls, module: torch.nn.Module, options: ModuleExtractorOptions, name: str | None = None
    ) -> ModuleExtractor:
        return cls(
            module, image_size=options.image_size, mean=options.mean, std=options.std, layers=options.layers, name=name
        )

    @classmethod
    def from_torchscript(cls, path: str | Path, **kwargs: Any) -> ModuleExtractor:
        path = Path(path)
        if not path.is_file():
            raise AHLError(f"TorchScript file not found: {path}")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - RuntimeError for a foreign zip, ValueError/OSError for other files
            raise AHLError(
                f"{path} is not a TorchScript archive ({type(exc).__name__}: {exc}); save the network with "
                "torch.jit.save(torch.jit.script(model), path), or pass a state dict with extractor_options "
                "weights=path for a registered architecture"
            ) from None
        return cls(module, name=kwargs.pop("name", path.name), **kwargs)

    def _check_layers(self) -> None:
        if self.layers is None or self.scripted:
            return  # a scripted module's dict keys are only known from its output
        names = dict(self.module.named_modules())
        unknown = [layer for layer in self.layers if layer not in names]
        if unknown:
            shown = ", ".join(n for n in names if n and "." not in n)
            raise InvalidOptionsError(
                f"extractor {self.name!r} has no submodule(s) {unknown}; top-level submodules: {shown}"
            )

    def _normalise(self, batch: torch.Tensor) -> torch.Tensor:
        if self.input_kind != "image" or self.mean is None or self.std is None:
            return batch
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1)
        return (batch - mean) / std

    def _run(self, batch: torch.Tensor) -> Any:
        x = self._normalise(batch)
        if self.layers is None or self.scripted:
            return self.module(x)
        captured: dict[str, Any] = {}
        modules = dict(self.module.named_modules())
        handles = [
            modules[layer].register_forward_hook(lambda _m, _i, out, layer=layer: captured.__setitem__(layer, out))
            for layer in self.layers
        ]
        try:
            out = self.module(x)
        finally:
            for handle in handles:
                handle.remove()
        if isinstance(out, Mapping) and all(layer in out for layer in self.layers):
            return out
        return captured

    def _select(self, out: Any) -> list[torch.Tensor]:
        if self.layers is not None:
            if not isinstance(out, Mapping):
                raise DataError(
                    f"extractor {self.name!r}: layers={list(self.layers)} needs a module that returns a dict of named "
                    f"maps (e.g. torch.jit.script(torchvision create_feature_extractor(...))), got {type(out).__name__}"
                )
            missing = [layer for layer in self.layers if layer not in out]
            if missing:
                raise DataError(f"extractor {self.name!r} returned {sorted(out)}, not the layer(s) {missing}")
            return [out[layer] for layer in self.layers]
        if isinstance(out, Mapping):
            raise DataError(
                f"extractor {self.name!r} returns a dict ({sorted(out)}); name the entries to read with layers=..."
            )
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def forward_features(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Per-scale features with autograd on (what backbone fine-tuning differentiates)."""
        scales = self._select(self._run(batch))
        if not scales or any(not isinstance(t, torch.Tensor) or t.dim() not in (2, 4) for t in scales):
            raise DataError(
                f"extractor module {self.name!r} must return a B×D or B×C×H×W tensor, or a list of them; "
                f"got {[getattr(t, 'shape', type(t).__name__) for t in scales]}"
            )
        return [t.float() for t in scales]

    def extract(self, batch: torch.Tensor) -> list[torch.Tensor]:
        with torch.inference_mode():
            scales = self.forward_features(batch)
        return [t.clone() for t in scales]

    @property
    def spec(self) -> FeatureSpec:
        if self._spec is None:
            device = next((p.device for p in self.module.parameters()), torch.device("cpu"))
            if self.input_kind == "image":
                assert self.image_size is not None  # __init__ sets it for image inputs
                probe = torch.zeros(1, 3, self.image_size, self.image_size, device=device)
            else:
                if self.input_dim is None:
                    raise AHLError("a vector-input extractor module needs input_dim= to describe its output")
                probe = torch.zeros(1, self.input_dim, device=device)
            scales = self.extract(probe)
            kind: FeatureKind = "map" if scales[0].dim() == 4 else "vector"
            self._spec = FeatureSpec(kind, tuple(int(t.shape[1]) for t in scales))
        return self._spec

    def fingerprint(self) -> str:
        layers = ",".join(self.layers or ())
        return (
            f"module:{self.name}:{weights_fingerprint(self.module)}:{self.input_kind}:{self.image_size}:{self.mean}"
            f":{self.std}:{layers}"
        )

    # -- fine-tuning (ahl_plugins.training.finetune) -------------------------------------
    def trainable_module(self) -> torch.nn.Module:
        return self.module

    def mark_finetuned(self, fingerprint: str) -> None:
        # The fingerprint hashes the weights themselves, so it already follows fine-tuning.
        self.finetuned = True

    def fitted_state(self) -> dict[str, torch.Tensor]:
        if not self.finetuned:
            return {}
        return {f"{FINETUNED_PREFIX}{k}": v.detach() for k, v in self.module.state_dict().items()}

    def load_fitted_state(self, state: dict[str, torch.Tensor]) -> None:
        own = {k[len(FINETUNED_PREFIX) :]: v for k, v in state.items() if k.startswith(FINETUNED_PREFIX)}
        if own:
            self.module.load_state_dict(own)
            self.finetuned = True

    def to(self, device: torch.device | str) -> ModuleExtractor:
        self.module.to(device)
        return self
