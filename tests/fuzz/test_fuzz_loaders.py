"""Property-based fuzzing of everything that reads user files: only the library's own errors may escape.

Each loader gets arbitrary (and arbitrarily damaged) input; it must either
return a result or raise an :class:`~ahl_plugins.errors.AHLError` subclass,
never a raw ``KeyError``, ``TypeError``, ``struct.error`` ... Examples are
derandomized (the same ones on every run) and few, so the file runs in a few
seconds; raise ``AHL_FUZZ_EXAMPLES`` to search harder locally.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ahl_plugins.data.arrays import from_arrays, load_npz
from ahl_plugins.data.folder import check_image, load_folder
from ahl_plugins.data.images import read_rgb
from ahl_plugins.data.tables import load_table
from ahl_plugins.errors import AHLError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on damaged files
EXAMPLES = int(os.environ.get("AHL_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def only_library_errors(call, *args, **kwargs):
    """Run ``call``; an exception that is not an AHLError fails the property (with its traceback)."""
    try:
        return call(*args, **kwargs)
    except AHLError:
        return None


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="ahl-fuzz-"))


def _flip(payload: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(payload)
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    return bytes(data)


edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6)
dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, "U3"])


def _elements(dtype):
    if np.dtype(dtype).kind == "f":
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    return None


@st.composite
def arrays(draw, max_dims: int = 3):
    dtype = draw(dtypes)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=6))
    return draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))


# -- arrays and .npz ------------------------------------------------------------------------------


@FUZZ
@given(X=arrays(), y=arrays(max_dims=2), types=st.none() | arrays(max_dims=1))
def test_from_arrays_raises_only_library_errors(X, y, types):
    only_library_errors(from_arrays, X, y, types)


@FUZZ
@given(X=arrays(), y=arrays(max_dims=2), extra=st.booleans(), damage=st.none() | edits)
def test_load_npz_raises_only_library_errors(X, y, extra, damage):
    buffer = io.BytesIO()
    np.savez(buffer, X=X, y=y, **({"types": y.astype(str), "partition": y.astype(str)} if extra else {}))
    payload = buffer.getvalue() if damage is None else _flip(buffer.getvalue(), damage)
    folder = _scratch()
    try:
        (folder / "data.npz").write_bytes(payload)
        only_library_errors(load_npz, folder / "data.npz")
    finally:
        shutil.rmtree(folder)


# -- tables ---------------------------------------------------------------------------------------

cells = st.sampled_from(["0", "1", "1.0", "0.5", "-3", "nan", "?", "", "tcp", "normal", "a,b", '"', "inf", " 2 "])


@FUZZ
@given(
    header=st.lists(st.sampled_from(["a", "b", "label", "type", "", "a"]), min_size=1, max_size=4),
    rows=st.lists(st.lists(cells, min_size=0, max_size=5), min_size=0, max_size=8),
    delimiter=st.sampled_from([",", "\t", ";"]),
    options=st.fixed_dictionaries(
        {},
        optional={
            "label_column": st.sampled_from(["label", "a", 0, 7, "nope"]),
            "type_column": st.sampled_from(["type", "b", 1]),
            "normal_labels": st.sampled_from([["0"], ["normal"], "1", [5]]),
            "categorical": st.sampled_from([["a"], ["b"], ["label"], []]),
            "drop_labels": st.sampled_from([["1"], ["0"], []]),
            "header": st.booleans(),
        },
    ),
    gzip_damage=st.none() | edits,
)
def test_load_table_raises_only_library_errors(header, rows, delimiter, options, gzip_damage):
    text = "\n".join(delimiter.join(row) for row in [header, *rows])
    folder = _scratch()
    try:
        if gzip_damage is None:
            path = folder / "data.csv"
            path.write_text(text)
        else:
            import gzip

            path = folder / "data.csv.gz"
            path.write_bytes(_flip(gzip.compress(text.encode()), gzip_damage))
        only_library_errors(load_table, path, **options)
    finally:
        shutil.rmtree(folder)


# -- images ---------------------------------------------------------------------------------------


def _image_bytes(mode: str, fmt: str) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (9, 7), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, (9, 7, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


VALID_IMAGES = [(m, f) for f in ("PNG", "JPEG", "BMP", "TIFF") for m in ("RGB", "L")]
VALID_IMAGES += [("I;16", "PNG"), ("RGBA", "PNG"), ("P", "PNG")]


@FUZZ
@given(
    source=st.sampled_from(VALID_IMAGES),
    damage=st.none() | edits,
    cut=st.none() | st.integers(0, 400),
    suffix=st.sampled_from([".png", ".jpg", ".tiff", ".bmp"]),
)
def test_image_reading_raises_only_library_errors(source, damage, cut, suffix):
    payload = _image_bytes(*source)
    payload = payload if damage is None else _flip(payload, damage)
    payload = payload if cut is None else payload[:cut]
    folder = _scratch()
    try:
        path = folder / f"image{suffix}"
        path.write_bytes(payload)
        reason = check_image(path)
        assert reason is None or isinstance(reason, str)
        only_library_errors(read_rgb, path)
    finally:
        shutil.rmtree(folder)


@FUZZ
@given(
    damage=edits,
    target=st.sampled_from(["train/good/0.png", "test/good/0.png", "test/dent/0.png"]),
    skip=st.booleans(),
    stray=st.sampled_from([None, "test/dent/x.webp", "test/empty/", "train/bad/0.png"]),
)
def test_load_folder_raises_only_library_errors(damage, target, skip, stray):
    folder = _scratch()
    try:
        for name in ("train/good/0.png", "train/good/1.png", "test/good/0.png", "test/dent/0.png"):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(_image_bytes("RGB", "PNG"))
        (folder / target).write_bytes(_flip((folder / target).read_bytes(), damage))
        if stray is not None:
            (folder / stray).parent.mkdir(parents=True, exist_ok=True)
            if not stray.endswith("/"):
                (folder / stray).write_bytes(b"stray")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the ignored .webp is reported by a warning; only errors matter here
            only_library_errors(load_folder, folder, skip_bad_images=skip)
    finally:
        shutil.rmtree(folder)


# -- saved models ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from ahl_plugins.detector import OSADDetector

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    y = np.r_[np.zeros(36), np.ones(4)].astype(int)
    options = {"epochs": 1, "batches_per_epoch": 1, "n_pseudo": 4, "use_cache": False}
    path = OSADDetector("devnet", **options).fit(X, y).save(tmp_path_factory.mktemp("fuzz") / "model")
    return path, X


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _paths(document, prefix=()):
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _paths(value, (*prefix, key))


@FUZZ
@given(
    choice=st.integers(0, 10_000),
    action=st.sampled_from(["delete", "replace"]),
    value=json_values,
    weights=st.sampled_from([None, "scorer.safetensors", "extractor.safetensors", "history.json"]),
    damage=edits,
    keep_checksums=st.booleans(),
)
def test_loading_a_damaged_saved_model_raises_only_library_errors(
    saved_model, choice, action, value, weights, damage, keep_checksums
):
    from ahl_plugins.detector import OSADDetector

    source, X = saved_model
    folder = _scratch()
    try:
        model = folder / "model"
        shutil.copytree(source, model)
        document = json.loads((model / "config.json").read_text())
        if not keep_checksums:
            document["files"] = {}
        paths = [p for p in _paths(document) if p]
        *parent, key = paths[choice % len(paths)]
        holder = document
        for part in parent:
            holder = holder[part]
        if action == "delete":
            del holder[key]
        else:
            holder[key] = value
        (model / "config.json").write_text(json.dumps(document))
        if weights is not None:
            (model / weights).write_bytes(_flip((model / weights).read_bytes(), damage))
        detector = only_library_errors(OSADDetector.load, model)
        if detector is not None:
            only_library_errors(detector.decision_function, X)
    finally:
        shutil.rmtree(folder)
