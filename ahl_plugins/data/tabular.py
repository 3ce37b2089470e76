"""One-hot encoding of categorical table columns, fitted on training rows only.

The encoder learns nothing but each categorical column's vocabulary (sorted
categories present in the rows it was fitted on). A category first met later
encodes as all zeros in its column group: a pattern no training row has, so
novelty stays visible without a column that is constant in training. It
serialises to plain JSON so a saved detector can re-apply it to new rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ahl_plugins.errors import DataError

MISSING_TOKENS = frozenset({"", "?", "na", "n/a", "nan", "null", "none"})


def parse_float_column(name: str, values: np.ndarray | Sequence[Any]) -> np.ndarray:
    """``values`` (strings or numbers) as float64; missing tokens become NaN.

    A value that is neither a number nor a missing token raises
    :class:`DataError` naming the rows.
    """
    values = np.asarray(values)
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    try:
        return values.astype(np.float64)
    except ValueError:
        pass
    out = np.empty(values.shape[0], dtype=np.float64)
    bad = []
    for i, raw in enumerate(values.tolist()):
        text = str(raw).strip()
        if text.lower() in MISSING_TOKENS:
            out[i] = np.nan
            continue
        try:
            out[i] = float(text)
        except ValueError:
            out[i] = np.nan
            bad.append(i)
    if bad:
        shown = ", ".join(f"row {i}: {str(values[i])!r}" for i in bad[:5])
        raise DataError(
            f"column {name!r} is numeric but holds non-numeric values ({shown}"
            f"{', ...' if len(bad) > 5 else ''}; {len(bad)} in all). Fix the values or declare the column categorical"
        )
    return out


def check_finite(matrix: np.ndarray, feature_names: Sequence[str] | None = None, *, where: str = "data") -> None:
    """Raise :class:`DataError` naming the rows and columns that hold NaN or infinity."""
    bad = ~np.isfinite(matrix)
    if not bad.any():
        return
    rows = np.flatnonzero(bad.any(axis=1))
    cols = np.flatnonzero(bad.any(axis=0))
    names = [feature_names[c] if feature_names is not None else str(c) for c in cols[:10]]
    raise DataError(
        f"{where}: NaN or infinite values in {rows.size} rows (rows {', '.join(map(str, rows[:10].tolist()))}"
        f"{', ...' if rows.size > 10 else ''}) and {cols.size} columns ({', '.join(names)}"
        f"{', ...' if cols.size > 10 else ''}). Impute or drop them before loading"
    )


@dataclass
class TabularEncoder:
    """Numeric columns pass through; categorical ones become one-hot groups."""

    columns: list[str]
    categorical: list[str]
    categories: dict[str, list[str]]

    @classmethod
    def fit(
        cls,
        table: Mapping[str, Sequence[Any] | np.ndarray],
        categorical: Sequence[str] = (),
        rows: Sequence[int] | np.ndarray | None = None,
    ) -> TabularEncoder:
        """Learn each categorical column's vocabulary from ``rows`` (all rows when ``None``)."""
        columns = list(table)
        unknown = [c for c in categorical if c not in table]
        if unknown:
            raise DataError(f"categorical columns {unknown} not in the table; columns are {columns}")
        categories = {}
        for name in categorical:
            values = np.asarray(table[name], dtype=str)
            if rows is not None:
                values = values[np.asarray(rows)]
            categories[name] = sorted(set(values.tolist()))
        return cls(columns, [c for c in columns if c in set(categorical)], categories)

    @property
    def feature_names(self) -> list[str]:
        names: list[str] = []
        for column in self.columns:
            if column in self.categories:
                names += [f"{column}={value}" for value in self.categories[column]]
            else:
                names.append(column)
        return names

    def transform(self, table: Mapping[str, Sequence[Any] | np.ndarray]) -> np.ndarray:
        """``float32`` matrix in ``feature_names`` order; NaN/inf raise :class:`DataError`."""
        missing = [c for c in self.columns if c not in table]
        if missing:
            raise DataError(f"table lacks columns {missing} the encoder was fitted with; it has {list(table)}")
        n_rows = {len(table[c]) for c in self.columns}
        if len(n_rows) > 1:
            raise DataError(f"table columns have different lengths: {sorted(n_rows)}")
        n = n_rows.pop() if n_rows else 0
        blocks = []
        for column in self.columns:
            if column in self.categories:
                vocabulary = self.categories[column]
                values = np.asarray(table[column], dtype=str)
                position = np.searchsorted(vocabulary, values)
                position = np.minimum(position, max(len(vocabulary) - 1, 0))
                known = np.asarray(vocabulary, dtype=str)[position] == values if vocabulary else np.zeros(n, bool)
                block = np.zeros((n, len(vocabulary)), dtype=np.float32)
                block[np.flatnonzero(known), position[known]] = 1.0
                blocks.append(block)
            else:
                blocks.append(parse_float_column(column, table[column]).astype(np.float32)[:, None])
        matrix = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0), np.float32)
        check_finite(matrix, self.feature_names, where="table")
        return matrix

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "one_hot",
            "columns": list(self.columns),
            "categorical": list(self.categorical),
            "categories": {k: list(v) for k, v in self.categories.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TabularEncoder:
        if data.get("kind") != "one_hot":
            raise DataError(f"not a saved tabular encoder (kind {data.get('kind')!r})")
        try:
            return cls(
                list(data["columns"]),
                list(data["categorical"]),
                {str(k): sorted(str(x) for x in v) for k, v in data["categories"].items()},
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"saved tabular encoder is incomplete: {exc}") from None


def refit_encoding(dataset, rows: Sequence[int] | np.ndarray):
    """``dataset`` re-encoded with the vocabulary of ``rows`` only (e.g. a split's training rows).

    Loaders fit on the source's training partition; a single table has none,
    so its loader fits on all rows, and a strict run refits here on
    ``split.train_indices`` (row order, and so the split, stay valid).
    """
    from dataclasses import replace

    if dataset.encoder is None or dataset.raw_table is None:
        raise DataError(f"dataset {dataset.name!r} has no tabular encoding to refit (it was not loaded from a table)")
    encoder = TabularEncoder.fit(dataset.raw_table, dataset.encoder.categorical, rows)
    rows = np.asarray(rows)
    count = int(rows.sum()) if rows.dtype == bool else int(rows.size)
    info = dict(dataset.info, encoder_fitted_on=f"{count} given rows")
    return replace(
        dataset,
        inputs=encoder.transform(dataset.raw_table),
        feature_names=encoder.feature_names,
        encoder=encoder,
        info=info,
    )
