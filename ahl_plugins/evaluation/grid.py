"""The compare grid: which splits exist and which cells run on each.

A *split* is (setting, M, seen type, seed); every cell on a split is fitted
and scored on exactly the same training and test samples, which is what
makes the base-vs-AHL difference a paired one. Cell ids are stable strings,
so a restarted compare recognises the cells it already finished.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ahl_plugins.errors import InvalidOptionsError

SETTINGS = ("general", "hard")
BASE = "base"
AHL = "ahl"
KNN = "knn"
#: Forms of the reference rows (all of variant ``knn``: no detector is trained): the label-free pooled k-NN
#: distance to the k-th neighbour or the mean of the k nearest, and the PatchCore-class nearest patch; and two
#: labelled rows on the PatchCore-class maps (SegAD-class map statistics with a logistic classifier: alone, or
#: on the PatchCore-class floor; ahl_plugins.evaluation.patchcore_stats), opt-in only.
KTH, MEAN, PATCHCORE = "kth", "mean", "patchcore"
PATCHCORE_STATS, PATCHCORE_FLOOR_STATS = "patchcore_stats", "patchcore_floor_stats"
PATCH_FORMS = (PATCHCORE, PATCHCORE_STATS, PATCHCORE_FLOOR_STATS)
REFERENCE_FORMS = (KTH, MEAN, *PATCH_FORMS)
ALL_TYPES = "all"
#: variant name -> AHLOptions.ablation
ABLATIONS = {"ahl_uniform": "uniform", "ahl_random_tasks": "random_tasks", "ahl_ensemble": "ensemble"}
VARIANT_ORDER = (KNN, BASE, AHL, *ABLATIONS)
#: Training seed of replicate r > 0 of a split with seed s: TRAIN_SEED_BASE * r + s, away from every split seed.
TRAIN_SEED_BASE = 1000


def slug(text: str) -> str:
    """A file-name-safe form of ``text``; a hash suffix keeps distinct names distinct."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("._") or "x"
    if safe != str(text):
        safe = f"{safe}-{hashlib.sha1(str(text).encode()).hexdigest()[:6]}"
    return safe


@dataclass(frozen=True, order=True)
class SplitKey:
    """One seeded train/test split; ``seen_type`` is ``"all"`` in the general setting."""

    setting: str
    n_anomalies: int
    seen_type: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.setting}-M{self.n_anomalies}-{slug(self.seen_type)}-s{self.seed}"


@dataclass(frozen=True)
class Cell:
    """One fit-and-score job: a model variant on a split.

    ``model`` is the row label (``"knn"`` for the reference); ``source_model``
    is the registered model whose extractor a k-NN row borrows. ``replicate``
    r > 0 refits the same split with another training seed (``--train-seeds``):
    heads' initialisation, batch order, pseudo-anomaly pool and AHL's task
    sampling change, the data do not.
    """

    split: SplitKey
    model: str
    variant: str
    source_model: str | None = None
    replicate: int = 0
    #: which label-free reference a ``knn`` cell computes (:data:`REFERENCE_FORMS`); not part of the id, the
    #: row label (``knn``, ``knn[mean]``, ``patchcore``) already says it
    form: str = KTH

    @property
    def id(self) -> str:
        base = f"{slug(self.model)}__{self.variant}__{self.split.id}"
        return base if self.replicate == 0 else f"{base}-t{self.replicate}"

    @property
    def train_seed(self) -> int:
        """The detector's seed: the split's for replicate 0 (as before replicates existed), else one of its own."""
        return self.split.seed if self.replicate == 0 else TRAIN_SEED_BASE * self.replicate + self.split.seed

    @property
    def is_knn(self) -> bool:
        return self.variant == KNN

    def detector_kwargs(self) -> dict[str, Any]:
        """``OSADDetector`` arguments that make this variant (``ahl`` flag and ablation)."""
        if self.is_knn:
            raise ValueError("a k-NN cell has no detector")
        if self.variant == BASE:
            return {"ahl": False}
        if self.variant == AHL:
            return {"ahl": True}
        return {"ahl": True, "ablation": ABLATIONS[self.variant]}


def variants(ablations: bool) -> tuple[str, ...]:
    return (BASE, AHL, *ABLATIONS) if ablations else (BASE, AHL)


def parse_settings(value: str | Sequence[str]) -> tuple[str, ...]:
    items = _items(value)
    if items == ["both"]:
        return SETTINGS
    bad = [s for s in items if s not in SETTINGS]
    if bad or not items:
        raise InvalidOptionsError(f"unknown setting(s) {bad or items}; use general, hard or both")
    return tuple(dict.fromkeys(items))


def parse_n_anomalies(value: str | Sequence[int]) -> tuple[int, ...]:
    items = _items(value)
    try:
        numbers = [int(v) for v in items]
    except ValueError:
        raise InvalidOptionsError(f"--n-anomalies takes comma-separated positive integers, got {value!r}") from None
    if not numbers or any(n < 1 for n in numbers):
        raise InvalidOptionsError(f"--n-anomalies must be positive integers (e.g. 1,10), got {value!r}")
    return tuple(dict.fromkeys(numbers))


def _items(value: str | Iterable[Any]) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value]


def build_splits(
    settings: Sequence[str], n_anomalies: Sequence[int], hard_types: Sequence[str], seeds: Sequence[int]
) -> list[SplitKey]:
    """Every split, in run order: setting, M, seen type, then seed."""
    splits: list[SplitKey] = []
    for setting in settings:
        for m in n_anomalies:
            for seen in hard_types if setting == "hard" else (ALL_TYPES,):
                splits.extend(SplitKey(setting, int(m), str(seen), int(seed)) for seed in seeds)
    return splits


def cells_for(
    split: SplitKey,
    models: Sequence[str],
    ablations: bool,
    knn_rows: Sequence[tuple[str, ...]] = (),
    train_seeds: int = 1,
) -> list[Cell]:
    """The cells of one split: the k-NN reference row(s) first, then each model's variants per training seed.

    ``knn_rows`` holds ``(label, model)`` pairs, or ``(label, model, form)``: one reference row per form and
    distinct feature extractor among the models. References are not trained, so they have no replicates.
    """
    cells = [Cell(split, row[0], KNN, row[1], form=row[2] if len(row) > 2 else KTH) for row in knn_rows]
    cells += [
        Cell(split, model, variant, replicate=r)
        for r in range(train_seeds)
        for model in models
        for variant in variants(ablations)
    ]
    return cells


def build_grid(
    models: Sequence[str],
    settings: Sequence[str],
    n_anomalies: Sequence[int],
    hard_types: Sequence[str],
    seeds: Sequence[int],
    ablations: bool = False,
    knn_rows: Sequence[tuple[str, ...]] = (),
    train_seeds: int = 1,
) -> list[tuple[SplitKey, list[Cell]]]:
    """The whole grid, grouped by split (each split is built once)."""
    return [
        (split, cells_for(split, models, ablations, knn_rows, train_seeds))
        for split in build_splits(settings, n_anomalies, hard_types, seeds)
    ]
