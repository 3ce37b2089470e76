"""Reading images into RGB tensors, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from ahl_plugins.errors import DataError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


def read_rgb(path: str | Path):
    """Decode ``path`` fully into an RGB ``PIL.Image`` (grayscale, palette, RGBA converted)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"cannot read image {path}: {exc}. Replace or remove the file, or pass --skip-bad-images "
            "(skip_bad_images=True) to skip unreadable images and report them"
        ) from None


def load_image_tensor(path: str | Path, size: int):
    """``3×size×size`` float tensor in ``[0, 1]``: the form extractors and generators take."""
    import numpy as np
    import torch
    from PIL import Image

    image = read_rgb(path).resize((size, size), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
