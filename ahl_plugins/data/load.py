"""One entry point from "what the user typed" to an :class:`OSADDataset`.

``source`` may be a dataset already, a folder (MVTec-AD layout, or a folder
holding the NSL-KDD files), a ``.npz`` file, a CSV/TSV table (``.gz`` too; a
PMLB file is recognised by name), or the named sets ``"digits"`` (the demo)
and ``"elpv"`` (optional package). An existing path wins over a name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ahl_plugins.data.dataset import OSADDataset
from ahl_plugins.errors import DataError

NAMED = ("digits", "elpv")


def load_dataset(source: str | Path | OSADDataset, **kw: Any) -> OSADDataset:
    """Load ``source``; keyword arguments go to the matching loader."""
    if isinstance(source, OSADDataset):
        if kw:
            raise DataError(f"options {sorted(kw)} cannot apply to an already loaded dataset")
        return source
    path = Path(source).expanduser()
    if not path.exists():
        key = str(source).strip().lower()
        if key == "digits":
            from ahl_plugins.data.digits import load_digits_osad

            return _call(load_digits_osad, "digits", kw)
        if key == "elpv":
            from ahl_plugins.data.elpv import load_elpv

            return _call(load_elpv, "elpv", kw)
        raise DataError(
            f"data source {str(source)!r} not found: give an MVTec-style folder, a .npz, a .csv/.tsv(.gz) file, "
            f"or one of the named sets {list(NAMED)}"
        )
    if path.is_dir():
        from ahl_plugins.data.nsl_kdd import TEST_FILE, TRAIN_FILES

        if (path / "train").is_dir() or (path / "test").is_dir():
            from ahl_plugins.data.folder import load_folder

            return _call(load_folder, str(path), kw, path)
        if (path / TEST_FILE).is_file() and any((path / f).is_file() for f in TRAIN_FILES):
            from ahl_plugins.data.nsl_kdd import load_nsl_kdd

            return _call(load_nsl_kdd, str(path), kw, path)
        from ahl_plugins.data.folder import load_folder

        return _call(load_folder, str(path), kw, path)  # raises the layout error with the expected folders
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".npz"]:
        from ahl_plugins.data.arrays import load_npz

        return _call(load_npz, str(path), kw, path)
    from ahl_plugins.data.tables import TABLE_SUFFIXES

    if any(s in TABLE_SUFFIXES for s in suffixes):
        from ahl_plugins.data.pmlb import DEFAULTS, load_pmlb, pmlb_name

        if pmlb_name(path) in DEFAULTS and "label_column" not in kw:
            return _call(load_pmlb, str(path), kw, path)
        from ahl_plugins.data.tables import load_table

        return _call(load_table, str(path), kw, path)
    raise DataError(
        f"cannot tell how to load {path}: expected a folder, .npz, .csv, .tsv (optionally .gz) or a named set {list(NAMED)}"
    )


def _call(loader, what: str, kw: dict[str, Any], *args: Any) -> OSADDataset:
    try:
        return loader(*args, **kw)
    except TypeError as exc:
        if "unexpected keyword argument" in str(exc) or "positional argument" in str(exc):
            import inspect

            accepted = [p for p in inspect.signature(loader).parameters if p not in ("root", "path")]
            raise DataError(f"loading {what}: {exc}; options accepted here: {accepted}") from None
        raise
