"""Reading images into RGB tensors, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from ahl_plugins.data.read_settings import DEFAULT_READ, STANDARD_DEPTHS, ReadSettings
from ahl_plugins.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
#: Pillow modes of one-channel images deeper than 8 bits, and the largest value of each. ``convert("RGB")``
#: would clip them (every 16-bit pixel above 255 turns white), so they are scaled by their bit depth first.
DEEP_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}
SKIP_HINT = (
    "Replace or remove the file, or pass --skip-bad-images (skip_bad_images=True) to skip unreadable images "
    "and report them"
)


def decode_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for a file it cannot decode, a decompression bomb included."""
    from PIL import Image, UnidentifiedImageError

    return (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError)


def unknown_depth(image) -> str | None:
    """Why the bit depth of ``image`` is unknown (mode ``I`` past 65535, mode ``F`` outside [0, 1]), or None."""
    import numpy as np

    top = DEEP_MODES.get(image.mode)
    if top is None:
        return None
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if np.isfinite(values).all() and low >= 0 and high <= top:
        return None
    return (
        f"mode {image.mode} with values {low:g}..{high:g}, outside 0..{top:g}, so its bit depth is unknown; "
        "save it as an 8- or 16-bit image"
    )


def to_8bit(image, bit_depth: int | None = None):
    """``image`` with a one-channel 16-bit (or 0..1 float) image scaled to 8 bits; others unchanged.

    ``bit_depth`` (integer modes only): the camera's real depth, so a 12-bit image in a 16-bit PNG is divided by
    4095, not 65535 (values above it are clipped); None: the container's depth (65535). Mode ``I`` (32-bit
    integers, how some readers return 16-bit PNG/TIFF) is read as 16-bit; call :func:`unknown_depth` first for
    images whose values do not fit that.
    """
    import numpy as np
    from PIL import Image

    top = DEEP_MODES.get(image.mode)
    if top is None:
        return image
    if bit_depth is not None and image.mode != "F":
        top = float(2 ** int(bit_depth) - 1)
    values = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.round(np.clip(values, 0, top) * (255.0 / top)).astype(np.uint8), mode="L")


def check_bit_depth(bit_depth: int | None) -> int | None:
    """``bit_depth`` if it is None or one of :data:`STANDARD_DEPTHS`, else a :class:`DataError`."""
    if bit_depth is not None and int(bit_depth) not in STANDARD_DEPTHS:
        raise DataError(f"bit_depth must be one of {list(STANDARD_DEPTHS)} or None (auto), got {bit_depth!r}")
    return None if bit_depth is None else int(bit_depth)


def choose_bit_depth(maximum: float) -> int:
    """The smallest standard depth whose range holds ``maximum`` (values 500..3999 -> 12 bits).

    Chosen from the whole data set's maximum, never per image: one depth for every image keeps a dark image
    dark, where a per-image rule would stretch it to look like a bright one.
    """
    for depth in STANDARD_DEPTHS:
        if maximum <= 2**depth - 1:
            return depth
    return STANDARD_DEPTHS[-1]


def deep_maximum(path: str | Path) -> float | None:
    """The largest value of a one-channel integer image deeper than 8 bits (None for any other image)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in DEEP_MODES or image.mode == "F":
            return None
        image.load()
        values = np.asarray(image)
        return float(values.max()) if values.size else 0.0


def read_rgb(path: str | Path, read: ReadSettings = DEFAULT_READ):
    """Decode ``path`` fully into an RGB ``PIL.Image`` (grayscale, palette, RGBA, 16-bit converted at
    ``read.bit_depth``)."""
    image = read_8bit(path, read)
    return image if image.mode == "RGB" else image.convert("RGB")


def read_8bit(path: str | Path, read: ReadSettings = DEFAULT_READ):
    """Decode ``path`` fully into an 8-bit ``PIL.Image``: grey (``L``) stays grey, so a caller that resizes
    first converts a third of the pixels (the result is the same: every channel of a grey image is equal)."""
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            problem = unknown_depth(image)
            if problem is None:
                out = to_8bit(image, read.bit_depth)
                return out if out.mode in ("L", "RGB") else out.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except decode_errors() as exc:
        raise DataError(f"cannot read image {path}: {exc or type(exc).__name__}. {SKIP_HINT}") from None
    raise DataError(f"cannot read image {path}: {problem}. {SKIP_HINT}")


def load_image_tensor(path: str | Path, size: int, read: ReadSettings = DEFAULT_READ):
    """``3×size×size`` float tensor in ``[0, 1]``: the form extractors and generators take."""
    import numpy as np
    import torch
    from PIL import Image

    image = read_8bit(path, read).resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
