"""Ground-truth pixel masks (MVTec-AD layout: ``ground_truth/<type>/<name>_mask.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ahl_plugins.errors import DataError


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return int(image.height), int(image.width)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A boolean ``H×W`` mask, true where the file is non-zero; resized (nearest) to ``size`` = (H, W) if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            gray = image.convert("L")
            if size is not None and (gray.height, gray.width) != tuple(size):
                gray = gray.resize((int(size[1]), int(size[0])), Image.Resampling.NEAREST)
            return np.asarray(gray) > 0
    except FileNotFoundError:
        raise DataError(f"mask not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read mask {path}: {exc}. Replace the file or remove it from ground_truth/") from None
