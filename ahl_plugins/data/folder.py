"""Image folders in MVTec-AD layout, the field's standard.

::

    root/train/good/*.png                 training normals (partition "train")
    root/test/good/*.png                  test normals     (partition "test")
    root/test/<type>/*.png                anomalies of <type>
    root/ground_truth/<type>/<stem>_mask.png   optional pixel masks

Images are decoded once at load time (``verify=True``) so a corrupt file is
reported up front, by name, instead of half-way through feature extraction.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ahl_plugins.data.dataset import NORMAL_TYPE, OSADDataset
from ahl_plugins.data.images import (
    IMAGE_EXTENSIONS,
    SKIP_HINT,
    check_bit_depth,
    choose_bit_depth,
    decode_errors,
    deep_maximum,
    unknown_depth,
)
from ahl_plugins.data.read_settings import ReadSettings
from ahl_plugins.errors import DataError, IgnoredFilesWarning, LowBitDepthWarning

GOOD = "good"


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (hidden files skipped), sorted by name."""
    return list_files(folder)[0]


def list_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """``(images, ignored)``: the files directly in ``folder`` the loader reads, and the other (non-hidden) ones."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    return images, [p for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]


def check_image(path: Path) -> str | None:
    """``None`` when ``path`` decodes fully, else the reason it does not.

    JPEGs are decoded at reduced scale (``draft``): the whole stream is still
    read, so truncation is caught, at a fraction of the cost.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
            if image.width < 1 or image.height < 1:
                return "image has no pixels"
            return unknown_depth(image)
    except decode_errors() as exc:
        return str(exc) or type(exc).__name__


def load_folder(
    root: str | Path,
    *,
    name: str | None = None,
    skip_bad_images: bool = False,
    verify: bool = True,
    bit_depth: int | None = None,
) -> OSADDataset:
    """Load an MVTec-AD style folder.

    A corrupt image raises :class:`DataError` naming it; with
    ``skip_bad_images=True`` it is left out and listed in ``dataset.skipped``.
    Files with an extension the loader does not read are listed there too
    (and in a warning), so no anomaly type vanishes unnoticed; a ``test/``
    folder left with no readable image is an error naming it.

    ``bit_depth`` (8, 10, 12, 14 or 16): how deep the 16-bit images really are, e.g. 12 for a 12-bit
    camera's PNGs, so they are divided by 4095 and not by 65535; None (the default) picks the smallest of those
    depths that holds the data set's largest value. The choice is the data set's ``read`` settings, which every
    reader is handed (a model fitted on it keeps them and reads new batches the same way). A :class:`LowBitDepthWarning` says when the 16-bit images
    use under 1/8 of their container's range, and which depth they are read at.
    """
    bit_depth = check_bit_depth(bit_depth)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    train_good = root / "train" / GOOD
    if not train_good.is_dir():
        raise DataError(
            f"{root} is not in MVTec-AD layout: missing folder {train_good}. "
            "Expected train/good/ (normal training images), test/good/ and test/<anomaly_type>/"
        )
    extra = sorted(p.name for p in (root / "train").iterdir() if p.is_dir() and p.name != GOOD)
    if extra:
        raise DataError(
            f"{root / 'train'} holds folders {extra} besides 'good': in MVTec-AD layout training images are "
            "normals only; put anomalies under test/<anomaly_type>/"
        )

    entries: list[tuple[Path, str, str]] = []  # (path, type, partition)
    ignored: list[Path] = []
    folders = [(train_good, NORMAL_TYPE, "train")]
    test_dir = root / "test"
    if test_dir.is_dir():
        for folder in sorted(p for p in test_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if folder.name == NORMAL_TYPE:
                raise DataError(
                    f"{folder}: the anomaly type name {NORMAL_TYPE!r} is reserved; "
                    f"put normal test images in test/{GOOD}/ and rename this folder"
                )
            folders.append((folder, NORMAL_TYPE if folder.name == GOOD else folder.name, "test"))
    for folder, kind, part in folders:
        images, others = list_files(folder)
        entries += [(p, kind, part) for p in images]
        ignored += others

    check_mask_owners(root, [p for p, _, part in entries if part == "test"])
    skipped = [f"{p.relative_to(root).as_posix()}: extension {p.suffix or '(none)'!r} is not read" for p in ignored]
    if ignored:
        warnings.warn(
            f"{root}: ignored {len(ignored)} file(s) with an extension the loader does not read "
            f"({', '.join(skipped[:5])}{', ...' if len(ignored) > 5 else ''}); accepted: {sorted(IMAGE_EXTENSIONS)}",
            IgnoredFilesWarning,
            stacklevel=2,
        )
    if verify:
        kept = []
        for entry in entries:
            reason = check_image(entry[0])
            if reason is None:
                kept.append(entry)
                continue
            if not skip_bad_images:
                raise DataError(f"cannot read image {entry[0]}: {reason}. {SKIP_HINT}")
            skipped.append(f"{entry[0].relative_to(root).as_posix()}: {reason}")
        entries = kept
    _check_folders_kept(root, folders[1:], entries, skipped)

    depth = _choose_depth(root, [p for p, _, _ in entries], bit_depth)

    n_train = sum(1 for _, kind, part in entries if part == "train")
    if n_train == 0:
        hint = f" ({len(skipped)} unreadable images were skipped)" if skipped else ""
        raise DataError(f"{train_good} holds no readable images{hint}; accepted extensions: {sorted(IMAGE_EXTENSIONS)}")

    masks = [_find_mask(root, path, kind) if kind != NORMAL_TYPE else None for path, kind, _ in entries]
    return OSADDataset(
        name=name or root.name,
        input_kind="image",
        inputs=[p.resolve() for p, _, _ in entries],
        labels=np.asarray([0 if kind == NORMAL_TYPE else 1 for _, kind, _ in entries], dtype=np.int64),
        types=np.asarray([kind for _, kind, _ in entries], dtype=str),
        ids=[p.relative_to(root).as_posix() for p, _, _ in entries],
        partition=np.asarray([part for _, _, part in entries], dtype=str),
        masks=masks if any(m is not None for m in masks) else None,
        skipped=tuple(skipped),
        info={"source": str(root.resolve()), "layout": "mvtec", **({"bit_depth": depth} if depth else {})},
        read=ReadSettings(bit_depth=depth),
    )


def _choose_depth(root: Path, paths: list[Path], bit_depth: int | None) -> int | None:
    """The depth the deep (16-bit) images are read at (the data set's read settings); None when it has none."""
    deep = [
        (p, m) for p in paths if p.suffix.lower() in {".png", ".tif", ".tiff"} for m in [_maximum(p)] if m is not None
    ]
    if not deep:
        return None
    top = max(m for _, m in deep)
    depth = bit_depth if bit_depth is not None else choose_bit_depth(top)
    if top < 65536 / 8:
        action = (
            f"read as {depth}-bit (values divided by {2**depth - 1})"
            if depth < 16
            else "read as 16-bit, so they look near-black to the extractor; pass bit_depth=12 (or None: auto)"
        )
        warnings.warn(
            f"{root}: {len(deep)} 16-bit image(s) use values up to {top:g} only, under 1/8 of the 16-bit range; "
            f"{action}",
            LowBitDepthWarning,
            stacklevel=3,
        )
    return depth


def _maximum(path: Path) -> float | None:
    try:
        return deep_maximum(path)
    except decode_errors():
        return None


def _check_folders_kept(root: Path, folders: list[tuple[Path, str, str]], entries, skipped: list[str]) -> None:
    """A test folder with no readable image left would drop its anomaly type silently: refuse it."""
    kept = {path.parent for path, _, _ in entries}
    for folder, _, _ in folders:
        if folder in kept:
            continue
        prefix = folder.relative_to(root).as_posix() + "/"
        reasons = [s for s in skipped if s.startswith(prefix)]
        why = f"; left out: {'; '.join(reasons[:5])}{' ...' if len(reasons) > 5 else ''}" if reasons else ""
        raise DataError(
            f"{folder} holds no readable image{why}. Accepted extensions: {sorted(IMAGE_EXTENSIONS)}; convert or "
            "replace the files, or remove the folder"
        )


def check_mask_owners(root: Path, test_images: list[Path]) -> None:
    """Every mask under ``ground_truth/<type>/`` must belong to an image of ``test/<type>/`` (``<stem>_mask.*`` or
    ``<stem>.*``): a mask for no image is a misnamed file, whose own image would silently train and be scored
    without it. A :class:`DataError` names it and says how to fix it."""
    truth = root / "ground_truth"
    if not truth.is_dir():
        return
    stems: dict[str, set[str]] = {}
    for path in test_images:
        stems.setdefault(path.parent.name, set()).add(path.stem)
    for folder in sorted(p for p in truth.iterdir() if p.is_dir() and not p.name.startswith(".")):
        known = stems.get(folder.name, set())
        for mask in list_images(folder):
            if mask.stem in known or mask.stem.removesuffix("_mask") in known:
                continue
            where = (
                f"test/{folder.name}/ has no image named {mask.stem.removesuffix('_mask')}.*"
                if folder.name in stems
                else f"there is no anomaly folder test/{folder.name}/"
            )
            raise DataError(
                f"mask {mask} belongs to no image: {where}. A mask of image test/<type>/<name>.<ext> must be "
                "ground_truth/<type>/<name>_mask.png; rename the mask to match its image, or remove it"
            )


def _find_mask(root: Path, image: Path, kind: str) -> Path | None:
    folder = root / "ground_truth" / kind
    if not folder.is_dir():
        return None
    for suffix in (".png", image.suffix, *sorted(IMAGE_EXTENSIONS)):
        for stem in (f"{image.stem}_mask", image.stem):
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate.resolve()
    return None
