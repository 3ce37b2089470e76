"""Any ``nn.Module`` (or TorchScript file) as a frozen feature extractor.

This is how a user wraps a backbone they already trained end to end (e.g. a
DevNet or DRA network trained elsewhere) and runs AHL on its frozen features,
which is the paper's own pipeline.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ahl_plugins.contracts import FeatureExtractor, FeatureSpec, InputKind
from ahl_plugins.errors import AHLError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ModuleExtractor(FeatureExtractor):
    """Wraps a module whose output is one tensor or a list of per-scale tensors."""

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
    ) -> None:
        if not isinstance(module, torch.nn.Module):
            raise AHLError(f"extractor must be a registered name or a torch.nn.Module, got {type(module).__name__}")
        self.module = module.eval().requires_grad_(False)
        self.input_kind = input_kind
        self.image_size = image_size if input_kind == "image" else None
        self.mean, self.std = mean, std
        self.name = name or type(module).__name__
        self.input_dim = input_dim
        self._spec: FeatureSpec | None = None

    @classmethod
    def from_torchscript(cls, path: str | Path, **kwargs) -> ModuleExtractor:
        path = Path(path)
        if not path.is_file():
            raise AHLError(f"TorchScript file not found: {path}")
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except RuntimeError as exc:
            raise AHLError(f"{path} is not a TorchScript archive ({exc}); save it with torch.jit.save") from None
        return cls(module, name=kwargs.pop("name", path.name), **kwargs)

    def _normalise(self, batch: torch.Tensor) -> torch.Tensor:
        if self.input_kind != "image" or self.mean is None or self.std is None:
            return batch
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1)
        return (batch - mean) / std

    def extract(self, batch: torch.Tensor) -> list[torch.Tensor]:
        with torch.inference_mode():
            out = self.module(self._normalise(batch))
        scales = list(out) if isinstance(out, (list, tuple)) else [out]
        if not scales or any(not isinstance(t, torch.Tensor) or t.dim() not in (2, 4) for t in scales):
            raise AHLError(
                f"extractor module {self.name!r} must return a B×D or B×C×H×W tensor, or a list of them; "
                f"got {[getattr(t, 'shape', type(t).__name__) for t in scales]}"
            )
        return [t.float() for t in scales]

    @property
    def spec(self) -> FeatureSpec:
        if self._spec is None:
            device = next((p.device for p in self.module.parameters()), torch.device("cpu"))
            if self.input_kind == "image":
                probe = torch.zeros(1, 3, self.image_size, self.image_size, device=device)
            else:
                if self.input_dim is None:
                    raise AHLError("a vector-input extractor module needs input_dim= to describe its output")
                probe = torch.zeros(1, self.input_dim, device=device)
            scales = self.extract(probe)
            kind = "map" if scales[0].dim() == 4 else "vector"
            self._spec = FeatureSpec(kind, tuple(int(t.shape[1]) for t in scales))
        return self._spec

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for key, tensor in sorted(self.module.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return f"module:{self.name}:{digest.hexdigest()[:16]}:{self.input_kind}:{self.image_size}:{self.mean}:{self.std}"

    def to(self, device: torch.device | str) -> ModuleExtractor:
        self.module.to(device)
        return self
