"""ELPV solar cells (Deitsch et al.), the AHL and DRA papers' industrial set, from PyPI.

The optional package ``elpv-dataset`` (``pip install 'ahl-plugins[elpv]'``)
ships 2,624 grayscale 300×300 PNGs and ``labels.csv`` (image path, defect
probability 0, 1/3, 2/3 or 1, module type mono/poly). The papers' protocol:

* probability 0 is normal, probability 1 an anomaly whose type is the module
  type (``mono``/``poly``), so the hard setting trains on one and tests on
  the other;
* probabilities 1/3 and 2/3 (uncertain annotations) are dropped;
* normals are split 75/25 into train/test, seeded (``split_seed``); anomalies
  stay unplaced (``partition == "any"``) for the protocol to draw from.

We read the package's files directly instead of its ``load_dataset()``, which
decodes every image into memory: the pipeline wants paths.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ahl_plugins.data.dataset import NORMAL_TYPE, OSADDataset
from ahl_plugins.errors import DataError

PACKAGE = "elpv_dataset"
INSTALL_HINT = "pip install 'ahl-plugins[elpv]'  (or: pip install elpv-dataset==1.0.0.post1)"
NORMAL_PROBABILITY = 0.0
ANOMALY_PROBABILITY = 1.0


def elpv_root() -> Path:
    """The installed package's data folder (holds ``labels.csv`` and ``images/``)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise DataError(
            f"the ELPV data set needs the optional package 'elpv-dataset', which is not installed: {INSTALL_HINT}"
        )
    return Path(spec.origin).parent / "data"


def read_labels(labels_file: Path) -> list[tuple[str, float, str]]:
    """``(relative image path, defect probability, module type)`` per line of ``labels.csv``."""
    try:
        lines = labels_file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read ELPV labels {labels_file}: {exc}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            path, probability, module = fields[0], float(fields[1]), fields[2]
        except (IndexError, ValueError):
            raise DataError(f"{labels_file}:{number}: expected 'path probability type', got {line.strip()!r}") from None
        rows.append((path, probability, module))
    if not rows:
        raise DataError(f"{labels_file} lists no images")
    return rows


def load_elpv(
    root: str | Path | None = None,
    *,
    split_seed: int | None = 0,
    test_fraction: float = 0.25,
    verify: bool = False,
    name: str = "elpv",
) -> OSADDataset:
    """ELPV under the papers' protocol (see the module doc).

    ``root`` defaults to the installed package's data folder. With
    ``split_seed=None`` the normals stay unplaced and every
    :func:`~ahl_plugins.data.protocols.make_split` seed re-splits them.
    ``verify=True`` decodes every image up front (about 2,200 PNGs).
    """
    root = Path(root).expanduser() if root is not None else elpv_root()
    labels_file = root / "labels.csv"
    if not labels_file.is_file():
        raise DataError(f"no labels.csv in {root}: not an elpv-dataset data folder ({INSTALL_HINT})")
    rows = read_labels(labels_file)
    kept = [r for r in rows if r[1] in (NORMAL_PROBABILITY, ANOMALY_PROBABILITY)]
    dropped = len(rows) - len(kept)
    paths = [root / r[0] for r in kept]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"ELPV: {len(missing)} images listed in {labels_file} are missing (first: {missing[0]}); "
            f"reinstall the package ({INSTALL_HINT})"
        )
    if verify:
        from ahl_plugins.data.folder import check_image

        for path in paths:
            reason = check_image(path)
            if reason is not None:
                raise DataError(f"cannot read image {path}: {reason}; reinstall the package ({INSTALL_HINT})")

    labels = np.asarray([0 if r[1] == NORMAL_PROBABILITY else 1 for r in kept], dtype=np.int64)
    modules = np.asarray([r[2].strip().lower() for r in kept], dtype=str)
    if np.isin(modules[labels == 1], [NORMAL_TYPE, ""]).any():
        raise DataError(f"{labels_file}: an anomalous cell has module type {NORMAL_TYPE!r} or none")
    types = np.where(labels == 1, modules, NORMAL_TYPE)
    partition = np.full(len(kept), "any", dtype=object)
    if split_seed is not None:
        if not 0.0 < test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
        normals = np.random.default_rng(split_seed).permutation(np.flatnonzero(labels == 0))
        n_test = int(round(test_fraction * normals.size))
        partition[normals[:n_test]] = "test"
        partition[normals[n_test:]] = "train"
    return OSADDataset(
        name=name,
        input_kind="image",
        inputs=paths,
        labels=labels,
        types=types,
        ids=[r[0] for r in kept],
        partition=partition.astype(str),
        info={
            "source": str(root.resolve()),
            "layout": "elpv",
            "dropped_uncertain": dropped,
            "normal_split_seed": split_seed,
            "test_fraction": test_fraction,
        },
    )
