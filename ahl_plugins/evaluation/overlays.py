"""What a person looks at: heatmap overlays of anomaly maps, and a browsable index page.

``write_map_report(directory, ...)`` writes, per image, ``<n>_<name>.npy``
(the raw float32 map, the image's own size) and ``<n>_<name>.png``: the image
beside the heatmap blended over it, with the ground-truth mask's outline in
green on both when a mask exists. Colours share one scale over all images
(the 1st to 99.9th percentile of every map's values), so a hotter colour
means a higher anomaly score in every panel. ``index.html`` lists the
images sorted by anomaly score, highest first.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ahl_plugins.atomic import atomic_write_text
from ahl_plugins.data.read_settings import DEFAULT_READ, ReadSettings

INDEX_FILE = "index.html"
OUTLINE = (0, 255, 0)
HEAT_ALPHA = 0.55
COLOURMAP = "jet"


@dataclass(frozen=True)
class MapEntry:
    """One scored image in the report."""

    image: Path
    sample_id: str
    score: float
    label: int | None = None
    kind: str = ""
    mask: Path | None = None


def _file_stem(index: int, sample_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id).strip("._") or "image"
    return f"{index:05d}_{safe[:80]}"


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The mask's border pixels: in the mask, with a 4-neighbour (within ``width``) outside it."""
    mask = np.asarray(mask, dtype=bool)
    inner = mask.copy()
    for _ in range(width):
        padded = np.pad(inner, 1, mode="constant", constant_values=False)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


#: Values sampled over all maps for their colour scale: memory stays flat however many maps there are.
COLOUR_SAMPLES = 2_000_000


def colour_range(maps: Iterable[np.ndarray], count: int | None = None) -> tuple[float, float]:
    """One colour scale for many maps: the 1st and 99.9th percentiles of all their values (at most 4096 values
    of each map, fewer when ``count`` maps would hold more than :data:`COLOUR_SAMPLES`)."""
    per_map = 4096 if not count else max(16, min(4096, COLOUR_SAMPLES // count))
    # slice first, then copy: a float64 view of the whole map (or of its memory map) would keep every map alive
    samples = [
        np.array(np.asarray(m).ravel()[:: max(1, np.asarray(m).size // per_map)], dtype=np.float64) for m in maps
    ]
    values = np.concatenate(samples) if samples else np.zeros(1)
    low, high = np.percentile(values, [1.0, 99.9])
    return float(low), float(high if high > low else low + 1e-6)


def overlay(
    image: np.ndarray, anomaly_map: np.ndarray, vmin: float, vmax: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """``H×2W×3`` uint8: the image, then the heatmap over it; the mask outline drawn on both."""
    import matplotlib

    rgb = np.asarray(image, dtype=np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    scaled = np.clip((np.asarray(anomaly_map, dtype=np.float64) - vmin) / (vmax - vmin), 0.0, 1.0)
    heat = matplotlib.colormaps[COLOURMAP](scaled)[..., :3] * 255.0
    blended = ((1 - HEAT_ALPHA) * rgb + HEAT_ALPHA * heat).astype(np.uint8)
    left, right = rgb.copy(), blended
    if mask is not None:
        border = outline(mask, width=max(1, round(max(mask.shape) / 256)))
        left[border] = OUTLINE
        right[border] = OUTLINE
    return np.concatenate([left, right], axis=1)


def write_map_report(
    directory: str | Path,
    entries: Sequence[MapEntry],
    maps: Iterable[np.ndarray],
    *,
    title: str = "Anomaly maps",
    read: ReadSettings = DEFAULT_READ,
) -> Path:
    """Write the raw maps, the overlays and ``index.html`` into ``directory``; return the index path.

    ``maps`` yields one map per entry, in order, at the image's own size; each
    is written to disk as it comes, so memory holds one map at a time.
    """
    from ahl_plugins.errors import DataError

    directory = Path(directory)
    written = write_raw_maps(directory, [(i, e.sample_id) for i, e in enumerate(entries)], maps)
    if written != len(entries):
        raise DataError(f"{written} anomaly maps for {len(entries)} images; they must match one to one")
    return write_overlays(directory, entries, title=title, read=read)


def map_file(directory: Path, index: int, sample_id: str) -> Path:
    """Where the raw map of the ``index``-th image of a report (id ``sample_id``) is saved."""
    return directory / f"{_file_stem(index, sample_id)}.npy"


def write_raw_maps(directory: Path, where: Sequence[tuple[int, str]], maps: Iterable[np.ndarray]) -> int:
    """Save each map as ``.npy`` (``where``: its image's position in the report and id); returns how many.
    The first half of a report: called once per chunk when scoring streams."""
    directory.mkdir(parents=True, exist_ok=True)
    written = 0
    for anomaly_map in maps:  # every map is drawn, so the generator finishes (and releases what it holds)
        if written < len(where):
            index, sample_id = where[written]
            np.save(map_file(directory, index, sample_id), np.asarray(anomaly_map, dtype=np.float32))
        written += 1
    return written


def write_overlays(
    directory: Path, entries: Sequence[MapEntry], *, title: str = "Anomaly maps", read: ReadSettings = DEFAULT_READ
) -> Path:
    """The second half of a report: the overlays and ``index.html`` from the raw maps on disk, one at a time."""
    from PIL import Image

    from ahl_plugins.data.images import read_rgb
    from ahl_plugins.data.masks import load_mask

    stems = [_file_stem(i, e.sample_id) for i, e in enumerate(entries)]
    vmin, vmax = colour_range((np.load(directory / f"{stem}.npy", mmap_mode="r") for stem in stems), count=len(stems))
    for stem, entry in zip(stems, entries, strict=True):
        anomaly_map = np.load(directory / f"{stem}.npy")
        image = np.asarray(read_rgb(entry.image, read))
        if image.shape[:2] != anomaly_map.shape:
            image = np.asarray(Image.fromarray(image).resize(anomaly_map.shape[::-1], Image.Resampling.BILINEAR))
        mask = load_mask(entry.mask, anomaly_map.shape) if entry.mask is not None else None
        Image.fromarray(overlay(image, anomaly_map, vmin, vmax, mask)).save(directory / f"{stem}.png")
    index = directory / INDEX_FILE
    atomic_write_text(index, _index_html(entries, stems, title, vmin, vmax))
    return index


def _index_html(entries: Sequence[MapEntry], stems: Sequence[str], title: str, vmin: float, vmax: float) -> str:
    order = sorted(range(len(entries)), key=lambda i: -entries[i].score)
    cards = []
    for rank, i in enumerate(order, 1):
        e = entries[i]
        truth = "" if e.label is None else ("anomaly" if e.label == 1 else "normal")
        kind = f" ({html.escape(e.kind)})" if e.kind and e.kind != truth else ""
        mask = " · mask outlined" if e.mask is not None else ""
        caption = (
            f"#{rank} · score {e.score:.4g} · {html.escape(truth)}{kind}{mask}<br>"
            f'<code>{html.escape(e.sample_id)}</code> · <a href="{stems[i]}.npy">raw map</a>'
        )
        cards.append(
            f'<figure><img src="{stems[i]}.png" alt="{html.escape(e.sample_id)}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:.5em;vertical-align:top}"
        "img{max-width:640px;height:auto;display:block}figcaption{font-size:.85em;max-width:640px}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(entries)} images, sorted by anomaly score (highest first). "
        f"Left: the image; right: the anomaly map ({COLOURMAP} colours, one scale for all images: "
        f"{vmin:.4g} blue to {vmax:.4g} red); green: the ground-truth mask's outline.</p>\n"
        + "\n".join(cards)
        + "\n</body></html>\n"
    )


def dataset_map_entries(dataset: Any, rows: Sequence[int], scores: np.ndarray) -> list[MapEntry]:
    """The report entries of the scored ``rows`` of ``dataset`` (what ``ahl score --maps`` lists)."""
    masks = dataset.masks or [None] * len(dataset)
    return [
        MapEntry(
            image=dataset.inputs[i],
            sample_id=dataset.ids[i],
            score=float(s),
            label=int(dataset.labels[i]),
            kind=str(dataset.types[i]),
            mask=masks[i],
        )
        for i, s in zip(rows, scores, strict=True)
    ]
