"""What an image file holds before any model sees it: its size, mode and raw value range, summed over a batch.

A model's data profile keeps these for its training images, and a new batch is summed the same way so the
two can be compared (``ahl_plugins.drift``). Only scalars per image are kept, so a batch of any size costs a
few bytes per image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ahl_plugins.data.images import DEEP_MODES, choose_bit_depth, decode_errors
from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings
from ahl_plugins.errors import DataError


@dataclass(frozen=True)
class ImageStats:
    """One image: ``width``×``height``, Pillow ``mode``, raw ``low``..``high`` (the file's own values, all
    channels), and ``mean``: the mean of the [0, 1] image a model sees under the read settings used."""

    width: int
    height: int
    mode: str
    low: float
    high: float
    mean: float

    @property
    def deep(self) -> bool:
        """A one-channel integer image deeper than 8 bits (whose bit depth the read settings decide)."""
        return self.mode in DEEP_MODES and self.mode != "F"


def image_stats(path: str | Path, read: ReadSettings = DEFAULT_READ) -> ImageStats:
    """:class:`ImageStats` of one file; an unreadable file is a :class:`DataError` naming it."""
    from PIL import Image, ImageStat

    try:
        with Image.open(path) as image:
            image.load()
            mode, width, height = image.mode, image.width, image.height
            if mode in ("L", "RGB"):  # 8-bit: Pillow's own statistics, without a float copy of the image
                extrema: Any = image.getextrema()  # (low, high) for L, one pair per band for RGB
                bands: list[tuple[float, float]] = [extrema] if mode == "L" else list(extrema)
                low, high = float(min(b[0] for b in bands)), float(max(b[1] for b in bands))
                mean = float(np.mean(ImageStat.Stat(image).mean)) / 255.0
                return ImageStats(int(width), int(height), mode, low, high, mean)
            values = np.asarray(image, dtype=np.float64)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except decode_errors() as exc:
        raise DataError(f"cannot read image {path}: {exc or type(exc).__name__}") from None
    if mode == "P":  # palette indices are not values: measure the colours
        with Image.open(path) as image:
            values = np.asarray(image.convert("RGB"), dtype=np.float64)
    if mode in ("RGBA", "LA", "PA"):
        values = values[..., :-1]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    top = DEEP_MODES.get(mode, 255.0)
    if mode in DEEP_MODES and mode != "F" and read.bit_depth is not None:
        top = float(2**read.bit_depth - 1)
    mean = float(np.clip(values, 0, top).mean() / top) if values.size else 0.0
    return ImageStats(int(width), int(height), mode, low, high, mean)


#: Quantiles of the per-image mean brightness a profile keeps.
MEAN_QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)


@dataclass
class BatchStats:
    """Running summary of many :class:`ImageStats` (add one at a time; memory: one float per image)."""

    n: int = 0
    widths: tuple[int, int] | None = None
    heights: tuple[int, int] | None = None
    modes: dict[str, int] = field(default_factory=dict)
    low: float = float("inf")
    high: float = float("-inf")
    deep_high: float | None = None  # the largest value of the deep (16-bit) images, None without any
    means: list[float] = field(default_factory=list)

    def add(self, stats: ImageStats) -> None:
        self.n += 1
        self.widths = _widen(self.widths, stats.width)
        self.heights = _widen(self.heights, stats.height)
        self.modes[stats.mode] = self.modes.get(stats.mode, 0) + 1
        self.low, self.high = min(self.low, stats.low), max(self.high, stats.high)
        if stats.deep:
            self.deep_high = stats.high if self.deep_high is None else max(self.deep_high, stats.high)
        self.means.append(stats.mean)

    def extend(self, many: Iterable[ImageStats]) -> BatchStats:
        for stats in many:
            self.add(stats)
        return self

    @property
    def own_depth(self) -> int | None:
        """The bit depth this batch's own maximum would pick (what ``load_folder`` would read it at alone)."""
        return None if self.deep_high is None else choose_bit_depth(self.deep_high)

    def median_mean(self) -> float:
        return float(np.median(self.means)) if self.means else float("nan")

    def summary(self) -> dict[str, Any]:
        """JSON-friendly: what a profile keeps of its training images and a comparison shows of a batch."""
        return {
            "n": self.n,
            "width": list(self.widths) if self.widths else None,
            "height": list(self.heights) if self.heights else None,
            "modes": dict(sorted(self.modes.items())),
            "raw_range": [self.low, self.high] if self.n else None,
            "own_bit_depth": self.own_depth,
            "mean_quantiles": (
                {f"{q:g}": float(np.quantile(self.means, q)) for q in MEAN_QUANTILES} if self.means else None
            ),
        }


def batch_stats(paths: Iterable[str | Path], read: ReadSettings = DEFAULT_READ) -> BatchStats:
    """:class:`BatchStats` of these image files, read one at a time."""
    return BatchStats().extend(image_stats(p, read) for p in paths)


def _widen(span: tuple[int, int] | None, value: int) -> tuple[int, int]:
    return (value, value) if span is None else (min(span[0], value), max(span[1], value))
