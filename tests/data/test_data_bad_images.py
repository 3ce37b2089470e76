"""Images the loader could get wrong: 16-bit depth, ignored extensions, empty type folders, decompression bombs."""

from __future__ import annotations

import numpy as np
import pytest
from data_testkit import make_mvtec_tree, write_image
from PIL import Image

from ahl_plugins.data.folder import check_image, load_folder
from ahl_plugins.data.images import load_image_tensor, read_rgb
from ahl_plugins.errors import DataError, IgnoredFilesWarning


def test_a_16_bit_png_is_scaled_by_its_bit_depth_not_clipped_white(tmp_path):
    values = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    tensor = load_image_tensor(tmp_path / "deep.png", 32)
    assert tensor.shape == (3, 32, 32)
    assert abs(float(tensor.mean()) - 0.5) < 0.01  # all white (the old clipping) would be ~1.0
    assert np.allclose(tensor[0].numpy(), values / 65535.0, atol=1 / 255)


def test_a_32_bit_image_outside_16_bits_is_refused(tmp_path):
    Image.fromarray(np.full((8, 8), 1 << 20, dtype=np.int32), mode="I").save(tmp_path / "huge.tiff")
    with pytest.raises(DataError, match=r"huge.tiff: mode I with values 1.04858e\+06.*bit depth is unknown"):
        read_rgb(tmp_path / "huge.tiff")
    assert "bit depth is unknown" in check_image(tmp_path / "huge.tiff")


def test_files_with_other_extensions_are_reported_not_dropped_silently(tmp_path):
    root = make_mvtec_tree(tmp_path / "cat", masks=False)
    (root / "test" / "scratch" / "extra.webp").write_bytes(b"RIFF....WEBP")
    with pytest.warns(
        IgnoredFilesWarning, match=r"ignored 1 file\(s\).*test/scratch/extra.webp: extension '.webp' is not read"
    ):
        ds = load_folder(root)
    assert ds.skipped == ("test/scratch/extra.webp: extension '.webp' is not read",)
    assert ds.type_counts()["scratch"] == 4


def test_an_anomaly_folder_of_unreadable_files_is_an_error_naming_it(tmp_path):
    root = make_mvtec_tree(tmp_path / "cat", masks=False)
    for i in range(2):
        (root / "test" / "crack" / f"{i}.webp").parent.mkdir(exist_ok=True)
        (root / "test" / "crack" / f"{i}.webp").write_bytes(b"RIFF....WEBP")
    with (
        pytest.warns(UserWarning),
        pytest.raises(DataError, match=r"test/crack holds no readable image; left out: test/crack/0.webp"),
    ):
        load_folder(root)


def test_an_anomaly_folder_whose_images_are_all_skipped_is_an_error(tmp_path):
    root = make_mvtec_tree(tmp_path / "cat", masks=False)
    (root / "test" / "crack").mkdir()
    (root / "test" / "crack" / "0.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"test/crack holds no readable image; left out: test/crack/0.png"):
        load_folder(root, skip_bad_images=True)


def test_an_empty_anomaly_folder_is_an_error(tmp_path):
    root = make_mvtec_tree(tmp_path / "cat", masks=False)
    (root / "test" / "crack").mkdir()
    with pytest.raises(DataError, match=r"test/crack holds no readable image\. Accepted extensions"):
        load_folder(root)


def test_a_decompression_bomb_is_a_bad_image_that_can_be_skipped(tmp_path, monkeypatch):
    root = make_mvtec_tree(tmp_path / "cat", masks=False)
    write_image(root / "test" / "dent" / "bomb.png", size=40)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # 40 x 43 pixels is over twice the limit: a "bomb"
    reason = check_image(root / "test" / "dent" / "bomb.png")
    assert reason is not None and "decompression bomb" in reason
    with pytest.raises(DataError, match=r"bomb.png: .*decompression bomb.*--skip-bad-images"):
        read_rgb(root / "test" / "dent" / "bomb.png")
    with pytest.raises(DataError, match=r"cannot read image .*bomb.png.*--skip-bad-images"):
        load_folder(root)
    ds = load_folder(root, skip_bad_images=True)
    assert len(ds.skipped) == 1 and ds.skipped[0].startswith("test/dent/bomb.png: ")
