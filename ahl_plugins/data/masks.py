"""Ground-truth pixel masks (MVTec-AD layout: ``ground_truth/<type>/<name>_mask.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ahl_plugins.errors import DataError

if TYPE_CHECKING:
    import torch


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


#: the side of the square grid training masks are kept on (max-pooled: a cell is defective if any pixel is),
#: fine enough for head maps of up to 64×64 positions, small enough to keep a mask per pseudo anomaly
MASK_GRID = 64


def pool_mask(mask: torch.Tensor, grid: int = MASK_GRID) -> torch.Tensor:
    """``n×g×g`` float (1 where any pixel of the cell is true) of ``n×S×S`` (or ``n×1×S×S``) masks; ``g = min(grid, S)``.

    Max pooling keeps a defect of a few pixels: area pooling would fade it to nothing on a coarse grid.
    """
    import torch.nn.functional as F

    if mask.dim() == 4:
        mask = mask[:, 0]
    side = min(int(grid), int(mask.shape[-1]), int(mask.shape[-2]))
    return F.adaptive_max_pool2d(mask.float()[:, None], (side, side))[:, 0]


def training_mask(mask_path: str | Path, image_path: str | Path, side: int, grid: int = MASK_GRID) -> torch.Tensor:
    """The ground-truth mask of a labelled training anomaly as the extractor sees its image: read at the
    image's own size (a mismatch is a :class:`DataError`), squashed to ``side × side`` as the image is, then
    max-pooled to the mask grid (``g×g`` float)."""
    import torch
    import torch.nn.functional as F

    image = image_size(image_path)
    pixels = torch.from_numpy(load_mask(mask_path).copy())
    mask_size = (int(pixels.shape[0]), int(pixels.shape[1]))
    if mask_size != image:
        raise DataError(
            f"mask {mask_path} is {mask_size[1]}×{mask_size[0]} pixels but its image {image_path} is "
            f"{image[1]}×{image[0]}: a ground-truth mask must have its image's size (width×height). Re-export the "
            "mask at the image's size, or remove it (the anomaly then trains from its image label only)"
        )
    squashed = F.interpolate(pixels.float()[None, None], size=(int(side), int(side)), mode="nearest")
    return pool_mask(squashed[0], grid)[0]
