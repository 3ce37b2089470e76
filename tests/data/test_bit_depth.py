"""16-bit images scaled by their real bit depth (a 12-bit camera's PNGs), with a warning when they look dark."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from ahl_plugins.data.folder import load_folder
from ahl_plugins.data.images import choose_bit_depth, load_image_tensor, read_rgb
from ahl_plugins.data.read_settings import ReadSettings
from ahl_plugins.errors import DataError, LowBitDepthWarning


def write16(path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint16)).save(path)  # mode I;16 PNG


def make_tree(root, low: int = 500, high: int = 3999):
    rng = np.random.default_rng(0)
    for part, n in (("train/good", 3), ("test/good", 1), ("test/dent", 1)):
        for i in range(n):
            values = rng.integers(low, high + 1, size=(16, 16))
            values[0, 0], values[-1, -1] = low, high
            write16(root / part / f"{i:03d}.png", values)
    return root


def test_12_bit_png_is_scaled_by_4095_not_65535(tmp_path):
    root = make_tree(tmp_path / "cam")
    with pytest.warns(LowBitDepthWarning, match=r"up to 3999.*read as 12-bit"):
        ds = load_folder(root)
    assert ds.info["bit_depth"] == 12 and ds.read == ReadSettings(bit_depth=12)
    image = np.asarray(read_rgb(ds.inputs[0], ds.read))
    assert image.max() == 249 and image.min() == 31  # 3999/4095·255 and 500/4095·255, not 15 and 2
    tensor = load_image_tensor(ds.inputs[0], 16, ds.read)
    assert 0.1 < float(tensor.mean()) < 0.9
    assert np.asarray(read_rgb(ds.inputs[0])).max() == 16  # without the data set's settings: the container's


def test_explicit_16_bit_keeps_the_container_range_and_warns_it_is_dark(tmp_path):
    root = make_tree(tmp_path / "cam")
    with pytest.warns(LowBitDepthWarning, match="near-black"):
        ds = load_folder(root, bit_depth=16)
    assert ds.info["bit_depth"] == 16
    assert np.asarray(read_rgb(ds.inputs[0], ds.read)).max() == 16  # 3999/65535·255


def test_full_range_16_bit_images_load_silently(tmp_path):
    root = make_tree(tmp_path / "cam", low=1000, high=60000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowBitDepthWarning)
        ds = load_folder(root)
    assert ds.info["bit_depth"] == 16
    assert np.asarray(read_rgb(ds.inputs[0], ds.read)).max() == 233  # 60000/65535·255


def test_one_depth_for_the_whole_data_set_keeps_a_dark_image_dark(tmp_path):
    root = make_tree(tmp_path / "cam")
    write16(root / "test" / "good" / "dark.png", np.full((16, 16), 800))
    with pytest.warns(LowBitDepthWarning):
        ds = load_folder(root)
    dark = next(p for p in ds.inputs if p.name == "dark.png")
    assert np.asarray(read_rgb(dark, ds.read)).max() == 50  # 800/4095·255, not stretched to a 10-bit range


def test_choose_bit_depth_and_bad_depth():
    assert [choose_bit_depth(v) for v in (200, 1023, 1024, 3999, 16383, 40000)] == [8, 10, 11 + 1, 12, 14, 16]
    with pytest.raises(DataError, match="bit_depth must be one of"):
        load_folder("/nonexistent", bit_depth=11)
    with pytest.raises(DataError, match="bit_depth must be one of"):
        ReadSettings(bit_depth=11)


def _read_in_worker(path: str, read: ReadSettings):
    """Run in a spawned process: it imports the library afresh, so only what it is handed decides the reading."""
    return load_image_tensor(path, 16, read).numpy()


def test_a_spawned_worker_reads_a_16_bit_file_to_the_drivers_tensor(tmp_path):
    import multiprocessing

    root = make_tree(tmp_path / "cam")
    with pytest.warns(LowBitDepthWarning):
        ds = load_folder(root)
    driver = load_image_tensor(ds.inputs[0], 16, ds.read).numpy()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        worker = pool.apply(_read_in_worker, (str(ds.inputs[0]), ds.read))
    np.testing.assert_array_equal(worker, driver)
    assert 0.1 < float(driver.mean()) < 0.9  # read at 12 bits, not the container's 16 (mean about 0.03)
