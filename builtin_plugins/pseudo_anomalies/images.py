"""Image-domain pseudo anomalies: CutPaste, CutMix and DRAEM-style Perlin blends.

All three work on ``B×3×S×S`` images in ``[0, 1]``, before any normalisation:
the extractor normalises real and pseudo anomalies alike (the authors'
release fed DRAEM images to the backbone unnormalised). Every random draw
comes from the ``torch.Generator`` passed in, on the CPU, so a seed fixes
the output on any device.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF

from ahl_plugins.contracts import PseudoAnomalyGenerator
from ahl_plugins.data.images import IMAGE_EXTENSIONS, load_image_tensor
from ahl_plugins.errors import DataError
from builtin_plugins.pseudo_anomalies import (
    CutMixOptions,
    CutPasteOptions,
    DraemOptions,
    PatchOptions,
)

_TEXTURE_MEMORY = 64  # decoded textures kept at once


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _randint(g: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (), generator=g))


def _check_images(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise DataError(f"{name} corrupts B×3×H×W image batches in [0, 1], got shape {tuple(x.shape)}")


def _check_pool(x: torch.Tensor, pool: torch.Tensor, name: str) -> None:
    if pool is None or pool.dim() != 4 or len(pool) == 0:
        raise DataError(
            f"{name} borrows content from other training normals but its pool is empty; "
            "it needs at least two normal images"
        )
    if pool.shape[1:] != x.shape[1:]:
        raise DataError(f"{name}: pool images are {tuple(pool.shape[1:])}, the batch is {tuple(x.shape[1:])}")


def _patch_size(g: torch.Generator, height: int, width: int, options: PatchOptions) -> tuple[int, int]:
    """(h, w) of a rectangle with area and aspect ratio drawn as in CutPaste."""
    area = _uniform(g, *options.area) * height * width
    log_low, log_high = math.log(options.aspect[0]), math.log(options.aspect[1])
    ratio = math.exp(_uniform(g, log_low, log_high))  # width / height
    w = int(round(math.sqrt(area * ratio)))
    h = int(round(math.sqrt(area / ratio)))
    return max(1, min(h, height - 1)), max(1, min(w, width - 1))


def _corner(g: torch.Generator, height: int, width: int, h: int, w: int) -> tuple[int, int]:
    return _randint(g, height - h + 1), _randint(g, width - w + 1)


class _PatchGenerator(PseudoAnomalyGenerator):
    domain = "image"
    name = "patch"

    def __init__(self, options: PatchOptions) -> None:
        self.options = options

    def fingerprint(self) -> str:
        return f"{self.name}:{self.options.model_dump_json()}:v1"


class CutPaste(_PatchGenerator):
    """A patch of the image itself, colour-jittered, pasted at another place."""

    name = "cutpaste"
    options: CutPasteOptions

    def _jitter(self, patch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        o = self.options
        patch = TF.adjust_brightness(patch, _uniform(g, 1 - o.brightness, 1 + o.brightness))
        patch = TF.adjust_contrast(patch, _uniform(g, 1 - o.contrast, 1 + o.contrast))
        patch = TF.adjust_saturation(patch, _uniform(g, 1 - o.saturation, 1 + o.saturation))
        if o.hue > 0:
            patch = TF.adjust_hue(patch, _uniform(g, -o.hue, o.hue))
        return patch.clamp(0, 1)

    def generate(self, x, pool, generator):
        _check_images(x, self.name)
        out = x.clone()
        mask = torch.zeros(x.shape[0], 1, *x.shape[2:], dtype=torch.bool, device=x.device)
        height, width = x.shape[-2:]
        for b in range(x.shape[0]):
            h, w = _patch_size(generator, height, width, self.options)
            sy, sx = _corner(generator, height, width, h, w)
            for _ in range(10):  # "pasted elsewhere": avoid the source spot
                ty, tx = _corner(generator, height, width, h, w)
                if (ty, tx) != (sy, sx):
                    break
            patch = self._jitter(x[b, :, sy : sy + h, sx : sx + w], generator)
            out[b, :, ty : ty + h, tx : tx + w] = patch
            mask[b, 0, ty : ty + h, tx : tx + w] = True
        return out, mask


class CutMix(_PatchGenerator):
    """A patch of another training normal (from ``pool``) pasted in."""

    name = "cutmix"
    options: CutMixOptions

    def generate(self, x, pool, generator):
        _check_images(x, self.name)
        _check_pool(x, pool, self.name)
        out = x.clone()
        mask = torch.zeros(x.shape[0], 1, *x.shape[2:], dtype=torch.bool, device=x.device)
        height, width = x.shape[-2:]
        for b in range(x.shape[0]):
            source = pool[_randint(generator, len(pool))].to(x.device, x.dtype)
            h, w = _patch_size(generator, height, width, self.options)
            sy, sx = _corner(generator, height, width, h, w)
            ty, tx = _corner(generator, height, width, h, w)
            out[b, :, ty : ty + h, tx : tx + w] = source[:, sy : sy + h, sx : sx + w]
            mask[b, 0, ty : ty + h, tx : tx + w] = True
        return out, mask


def perlin_noise(height: int, width: int, res: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """2-D gradient (Perlin) noise on a ``res`` grid, values in about ``[-1, 1]``."""
    ry, rx = res
    angles = 2 * math.pi * torch.rand(ry + 1, rx + 1, generator=generator)
    grad_y, grad_x = torch.sin(angles), torch.cos(angles)
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) * ry / height
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * rx / width
    iy, ix = ys.floor().long().clamp(max=ry - 1), xs.floor().long().clamp(max=rx - 1)
    fy, fx = (ys - iy)[:, None], (xs - ix)[None, :]

    def corner(dy: int, dx: int) -> torch.Tensor:
        gy = grad_y[iy + dy][:, ix + dx]
        gx = grad_x[iy + dy][:, ix + dx]
        return gy * (fy - dy) + gx * (fx - dx)

    def fade(t: torch.Tensor) -> torch.Tensor:
        return t * t * t * (t * (t * 6 - 15) + 10)

    uy, ux = fade(fy), fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return math.sqrt(2) * (top * (1 - uy) + bottom * uy)


class Draem(PseudoAnomalyGenerator):
    """DRAEM: ``out = (1-M)·x + M·((1-β)·texture + β·x)`` with ``M`` thresholded Perlin noise."""

    domain = "image"
    name = "draem"

    def __init__(self, options: DraemOptions) -> None:
        self.options = options
        self._textures: list[Path] = []
        self._loaded: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()
        if options.texture_dir is not None:
            folder = Path(options.texture_dir).expanduser()
            if not folder.is_dir():
                raise DataError(f"draem texture_dir {folder} is not a folder of images")
            self._textures = sorted(
                p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not self._textures:
                raise DataError(
                    f"draem texture_dir {folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                    "leave texture_dir unset to borrow textures from other training normals"
                )

    def fingerprint(self) -> str:
        textures = "pool"
        if self._textures:
            digest = hashlib.sha256()
            for path in self._textures:
                stat = path.stat()
                digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
            textures = f"dir:{digest.hexdigest()[:20]}"
        return f"{self.name}:{self.options.model_dump_json()}:{textures}:v1"

    def _texture(self, index: int, size: int) -> torch.Tensor:
        key = (index, size)
        if key not in self._loaded:
            self._loaded[key] = load_image_tensor(self._textures[index], size)
            while len(self._loaded) > _TEXTURE_MEMORY:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(key)
        return self._loaded[key]

    def _mask(self, height: int, width: int, g: torch.Generator) -> torch.Tensor:
        low, high = self.options.perlin_scale
        need = self.options.min_mask_fraction
        noise = torch.zeros(height, width)
        for _ in range(20):
            res = (2 ** (low + _randint(g, high - low)), 2 ** (low + _randint(g, high - low)))
            noise = perlin_noise(height, width, res, g)
            mask = noise > self.options.threshold
            if mask.float().mean() >= need and bool(mask.any()):
                return mask
        # Rare: keep the last noise's highest values so a pseudo anomaly always has one.
        count = max(1, int(math.ceil(need * height * width)))
        cut = noise.flatten().topk(count).values[-1]
        return noise >= cut

    def generate(self, x, pool, generator):
        _check_images(x, self.name)
        if not self._textures:
            _check_pool(x, pool, self.name)
        height, width = x.shape[-2:]
        out = x.clone()
        mask = torch.zeros(x.shape[0], 1, height, width, dtype=torch.bool, device=x.device)
        for b in range(x.shape[0]):
            if self._textures:
                texture = self._texture(_randint(generator, len(self._textures)), height)
                if texture.shape[-1] != width:
                    texture = F.interpolate(texture[None], size=(height, width), mode="bilinear")[0]
            else:
                texture = pool[_randint(generator, len(pool))]
            # Cheap texture augmentation: a random rotation by a multiple of 90° and a flip.
            turns, flip = _randint(generator, 4), _randint(generator, 2)
            if height == width:
                texture = torch.rot90(texture, turns, dims=(1, 2))
            if flip:
                texture = texture.flip(-1)
            texture = texture.to(x.device, x.dtype)
            m = self._mask(height, width, generator).to(x.device)
            beta = _uniform(generator, 0.0, self.options.beta_max)
            blended = (1 - beta) * texture + beta * x[b]
            out[b] = torch.where(m[None], blended, x[b])
            mask[b, 0] = m
        return out, mask
