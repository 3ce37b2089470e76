"""CSV/TSV tables (gzip allowed) as vectors: reading, guessing the label and categorical columns, encoding.

Labels follow the OSAD convention of ``data.arrays``: 0 normal, 1 anomaly; anomaly types come from a type
column when there is one, else a 0/1 label gives the single type ``"anomaly"`` and a multi-class label
``"class_<value>"``.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ahl_plugins.data.arrays import ANOMALY_TYPE, partition_values
from ahl_plugins.data.dataset import NORMAL_TYPE, OSADDataset
from ahl_plugins.data.tabular import MISSING_TOKENS, TabularEncoder
from ahl_plugins.errors import DataError

LABEL_COLUMN_GUESSES = ("label", "target", "y", "class", "is_anomaly", "anomaly", "outlier")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".data")


def read_table(
    path: str | Path, *, delimiter: str | None = None, header: bool = True
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Columns of a CSV/TSV file (``.gz`` allowed) as string arrays, in file order.

    The delimiter follows the suffix (``.tsv`` tab, ``.csv`` comma), else it is
    sniffed. Without a header the columns are named ``"0"``, ``"1"``, ...
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix.lower() == ".gz" else path.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc}; the file is damaged or not gzip") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc}); is it really a CSV/TSV file?") from None
    suffixes = [s.lower() for s in path.suffixes]
    if delimiter is None:
        if ".tsv" in suffixes:
            delimiter = "\t"
        elif ".csv" in suffixes:
            delimiter = ","
        else:
            try:
                delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",\t;| ").delimiter
            except csv.Error:
                delimiter = ","
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row and any(c.strip() for c in row)]
    if not rows:
        raise DataError(f"{path} holds no rows")
    if header:
        names = [c.strip() or f"column_{i}" for i, c in enumerate(rows[0])]
        rows = rows[1:]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataError(f"{path}: duplicate column names {duplicates}")
    else:
        names = [str(i) for i in range(len(rows[0]))]
    if not rows:
        raise DataError(f"{path} has a header but no data rows")
    ragged = [i for i, row in enumerate(rows) if len(row) != len(names)]
    if ragged:
        first = ragged[0]
        raise DataError(
            f"{path}: {len(ragged)} rows do not have {len(names)} fields (data row {first} has {len(rows[first])}); "
            f"check the delimiter ({delimiter!r}) and quoting"
        )
    matrix = np.char.strip(np.asarray(rows, dtype=str))
    return names, {name: matrix[:, j] for j, name in enumerate(names)}


def detect_categorical(table: dict[str, np.ndarray]) -> list[str]:
    """Columns holding values that are neither numbers nor missing-value tokens.

    A column whose values are almost all numbers is more likely a numeric
    column with typos than a category, so that raises instead of silently
    exploding into one-hot columns.
    """
    categorical = []
    for name, values in table.items():
        numeric = _numeric_mask(values)
        if numeric.all():
            continue
        if numeric.mean() >= 0.9:
            bad = np.flatnonzero(~numeric)
            raise DataError(
                f"column {name!r} looks numeric but rows {bad[:10].tolist()} hold {str(values[bad[0]])!r}"
                f"{' and more' if bad.size > 1 else ''}; fix them, drop the column, or list it in categorical=[...]"
            )
        categorical.append(name)
    return categorical


def load_table(
    path: str | Path,
    *,
    label_column: str | int | None = None,
    type_column: str | int | None = None,
    normal_labels: Sequence[object] | None = None,
    drop_labels: Sequence[object] = (),
    categorical: Sequence[str | int] | None = None,
    drop_columns: Sequence[str | int] = (),
    partition_column: str | int | None = None,
    fit_rows: Sequence[int] | np.ndarray | None = None,
    header: bool = True,
    delimiter: str | None = None,
    name: str | None = None,
    class_types: bool | None = None,
) -> OSADDataset:
    """A CSV/TSV table (gzip allowed) as vectors.

    ``label_column`` holds the class; rows whose value is in ``normal_labels``
    are normal (default: ``0`` for a 0/1 column, ``normal`` where present).
    ``type_column`` names the anomaly type; without it see the module doc
    (``class_types=True`` forces ``"class_<value>"`` types).
    Categorical columns (auto-detected unless given) are one-hot encoded with
    a vocabulary fitted on ``fit_rows``, else on the ``partition_column``'s
    ``train`` rows, else on all rows (see :func:`~ahl_plugins.data.tabular.refit_encoding`).
    """
    path = Path(path).expanduser()
    names, table = read_table(path, delimiter=delimiter, header=header)
    resolve = lambda column, role: _resolve_column(column, names, role, path)  # noqa: E731
    if label_column is None:
        guesses = [n for n in names if n.lower() in LABEL_COLUMN_GUESSES]
        if len(guesses) != 1:
            raise DataError(
                f"{path}: say which column holds the labels (label_column=..., --label-column); columns are {names}"
            )
        label_column = guesses[0]
    label_column = resolve(label_column, "label")
    type_column = resolve(type_column, "type") if type_column is not None else None
    partition_column = resolve(partition_column, "partition") if partition_column is not None else None
    dropped = [resolve(c, "drop") for c in drop_columns]

    raw_labels = np.asarray([_normal_form(v) for v in table[label_column].tolist()])
    keep = ~np.isin(raw_labels, [_normal_form(v) for v in drop_labels])
    row_numbers = np.flatnonzero(keep)
    table = {k: v[keep] for k, v in table.items()}
    raw_labels = raw_labels[keep]
    if raw_labels.size == 0:
        raise DataError(f"{path}: no rows left after dropping labels {list(drop_labels)}")
    present = sorted(set(raw_labels.tolist()))
    normals = _normal_values(present, normal_labels, path, label_column)
    labels = (~np.isin(raw_labels, normals)).astype(np.int64)

    anomaly_values = sorted(set(raw_labels[labels == 1].tolist()))
    if type_column is not None:
        kinds = np.char.strip(table[type_column].astype(str))
        bad = np.flatnonzero((labels == 1) & np.isin(np.char.lower(kinds), [NORMAL_TYPE, ""]))
        if bad.size and type_column != label_column:
            raise DataError(
                f"{path}: anomalies at data rows {row_numbers[bad][:10].tolist()} have type {str(kinds[bad[0]])!r} in column "
                f"{type_column!r}; an anomaly type must be non-empty and not {NORMAL_TYPE!r}"
            )
    elif anomaly_values == ["1"] and not class_types:
        kinds = np.full(raw_labels.shape, ANOMALY_TYPE)
    else:
        kinds = np.asarray([f"class_{v}" if _is_number(v) else v for v in raw_labels.tolist()])
    kinds = np.where(labels == 1, kinds, NORMAL_TYPE)

    if partition_column is not None:
        partition = partition_values(table[partition_column], path)
    else:
        partition = np.full(raw_labels.shape, "any")

    used = {c for c in (label_column, type_column, partition_column, *dropped) if c is not None}
    features = {k: v for k, v in table.items() if k not in used}
    if not features:
        raise DataError(f"{path}: no feature columns left besides {sorted(used)}")
    categorical_names: list[str]
    if categorical is None:
        categorical_names = detect_categorical(features)
    else:
        categorical_names = [resolve(c, "categorical") for c in categorical]
        clash = [c for c in categorical_names if c in used]
        if clash:
            raise DataError(f"{path}: columns {clash} are listed as categorical but used as label/type/partition")
    if fit_rows is not None:
        fitted_on = "given rows"
    elif np.any(partition == "train"):
        fit_rows, fitted_on = np.flatnonzero(partition == "train"), "train partition"
    else:
        fitted_on = "all rows (no train partition; refit_encoding(dataset, split.train_indices) for a strict fit)"
    encoder = TabularEncoder.fit(features, categorical_names, fit_rows)
    try:
        X = encoder.transform(features)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    dataset = OSADDataset(
        name=name or path.name.split(".")[0],
        input_kind="vector",
        inputs=X,
        labels=labels,
        types=kinds,
        ids=[f"row:{i}" for i in row_numbers],
        partition=partition,
        feature_names=encoder.feature_names,
        encoder=encoder if categorical_names else None,
        raw_table=features if categorical_names else None,
        info={
            "source": str(path.resolve()),
            "layout": "table",
            "label_column": label_column,
            "normal_labels": normals,
            "dropped_rows": int((~keep).sum()),
            "categorical": list(categorical_names),
            "encoder_fitted_on": fitted_on if categorical_names else None,
        },
    )
    return dataset


# --------------------------------------------------------------------------- helpers


def _resolve_column(column: str | int, names: list[str], role: str, path: Path) -> str:
    if isinstance(column, (int, np.integer)) and not isinstance(column, bool):
        if str(column) in names:
            return str(column)
        if 0 <= column < len(names):
            return names[column]
    elif str(column) in names:
        return str(column)
    else:
        lowered = [n for n in names if n.lower() == str(column).lower()]
        if len(lowered) == 1:
            return lowered[0]
    raise DataError(f"{path}: unknown {role} column {column!r}; columns are {names}")


def _normal_form(value: object) -> str:
    """Label values compare as text, with ``1``, ``1.0`` and `` 1 `` the same."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if np.isfinite(number) and number == int(number):
        return str(int(number))
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numeric_mask(values: np.ndarray) -> np.ndarray:
    try:
        values.astype(np.float64)
        return np.ones(values.shape[0], dtype=bool)
    except ValueError:
        pass
    lowered = np.char.lower(values.astype(str))
    return np.asarray([_is_number(v) or v in MISSING_TOKENS for v in lowered.tolist()], dtype=bool)


def _normal_values(present: list[str], normal_labels, path: Path, column: str) -> list[str]:
    if normal_labels is not None:
        if isinstance(normal_labels, (str, int, float)):
            normal_labels = [normal_labels]
        wanted = [_normal_form(v) for v in normal_labels]
        missing = [v for v in wanted if v not in present]
        if missing:
            raise DataError(
                f"{path}: normal label(s) {missing} do not occur in column {column!r}; values are {present}"
            )
        return wanted
    if set(present) <= {"0", "1"}:
        return ["0"]
    named = [v for v in present if v.lower() == NORMAL_TYPE]
    if named:
        return named
    raise DataError(
        f"{path}: cannot tell which values of column {column!r} are normal (values: {present[:20]}); "
        "pass normal_labels=[...] (--normal-labels)"
    )
