"""How an image file becomes the tensor a model sees: one value that travels with the data, never a global.

A data set carries its :class:`ReadSettings` (``OSADDataset.read``), a detector saves the ones it was fitted
with in its data profile, and every reader takes them as an argument. A worker process or a Ray task gets
them with the data it is handed (they pickle), so it reads a 16-bit file to the same tensor as the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ahl_plugins.errors import DataError

#: Bit depths a deep image may be declared with (or that ``choose_bit_depth`` picks from): what cameras write.
STANDARD_DEPTHS = (8, 10, 12, 14, 16)


@dataclass(frozen=True)
class ReadSettings:
    """How images are decoded and scaled before an extractor's own resize and normalisation.

    ``bit_depth``: the real depth of one-channel 16-bit images (12 for a 12-bit camera's PNGs: values are
    divided by 4095 and clipped there); None reads them at their container's depth (65535). ``channels``:
    every image becomes 3-channel RGB (grey replicated, alpha dropped). ``resample``: how an image is resized
    to the extractor's input side. Values end in [0, 1] (8-bit values / 255).
    """

    bit_depth: int | None = None
    channels: Literal["rgb"] = "rgb"
    resample: Literal["bilinear"] = "bilinear"

    def __post_init__(self) -> None:
        if self.bit_depth is not None:
            if isinstance(self.bit_depth, bool) or int(self.bit_depth) not in STANDARD_DEPTHS:
                raise DataError(
                    f"bit_depth must be one of {list(STANDARD_DEPTHS)} or None (auto), got {self.bit_depth!r}"
                )
            object.__setattr__(self, "bit_depth", int(self.bit_depth))
        if self.channels != "rgb":
            raise DataError(
                f"channels must be 'rgb' (the only channel mode the readers produce), got {self.channels!r}"
            )
        if self.resample != "bilinear":
            raise DataError(f"resample must be 'bilinear', got {self.resample!r}")

    def describe(self) -> str:
        """One phrase for messages: ``12-bit, rgb, bilinear``."""
        depth = "container depth" if self.bit_depth is None else f"{self.bit_depth}-bit"
        return f"{depth}, {self.channels}, {self.resample}"

    def to_dict(self) -> dict[str, Any]:
        return {"bit_depth": self.bit_depth, "channels": self.channels, "resample": self.resample}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ReadSettings:
        unknown = set(values) - {"bit_depth", "channels", "resample"}
        if unknown:
            raise DataError(f"unknown read settings {sorted(unknown)}; known: bit_depth, channels, resample")
        return cls(**values)


#: What a list of image paths is read with when nothing else is said: the container's depth.
DEFAULT_READ = ReadSettings()
