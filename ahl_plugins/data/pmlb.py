"""Multi-class UCI sets from PMLB (``.tsv.gz``, label column ``target``) as OSAD data.

Chosen classes are normal; every other class is an anomaly type
``"class_<k>"``. Defaults for the sets in ``shared/data/tabular/pmlb`` follow
common anomaly-detection use (ODDS/ADBench); other files default to the
majority class as normal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ahl_plugins.data.dataset import OSADDataset
from ahl_plugins.data.tables import load_table, read_table

LABEL_COLUMN = "target"
DEFAULTS: dict[str, dict[str, tuple[int, ...]]] = {
    "ann_thyroid": {"normal": (3,), "drop": ()},
    "shuttle": {"normal": (1,), "drop": (4,)},
    "page_blocks": {"normal": (1,), "drop": ()},
    "satimage": {"normal": (1, 3, 7), "drop": ()},
}


def pmlb_name(path: str | Path) -> str:
    return Path(path).name.split(".")[0]


def load_pmlb(
    path: str | Path,
    *,
    normal_classes: Sequence[int | str] | None = None,
    drop_classes: Sequence[int | str] | None = None,
    name: str | None = None,
) -> OSADDataset:
    """A PMLB table with ``normal_classes`` as normal and the rest as typed anomalies."""
    stem = pmlb_name(path)
    defaults = DEFAULTS.get(stem)
    if normal_classes is None:
        if defaults is not None:
            normal_classes = defaults["normal"]
        else:
            _, table = read_table(path)
            values, counts = np.unique(table.get(LABEL_COLUMN, np.zeros(0, str)), return_counts=True)
            normal_classes = [values[int(np.argmax(counts))]] if values.size else []
    if drop_classes is None:
        drop_classes = defaults["drop"] if defaults is not None and normal_classes == defaults["normal"] else ()
    dataset = load_table(
        path,
        label_column=LABEL_COLUMN,
        normal_labels=list(normal_classes),
        drop_labels=list(drop_classes),
        class_types=True,
        name=name or stem,
    )
    dataset.info.update(
        {
            "layout": "pmlb",
            "normal_classes": [str(c) for c in normal_classes],
            "drop_classes": [str(c) for c in drop_classes],
        }
    )
    return dataset
