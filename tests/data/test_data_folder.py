from __future__ import annotations

import numpy as np
import pytest
from data_testkit import make_mvtec_tree, write_corrupt, write_image

from ahl_plugins.data.dataset import NORMAL_TYPE
from ahl_plugins.data.folder import load_folder
from ahl_plugins.data.images import read_rgb
from ahl_plugins.errors import DataError


def test_mvtec_tree_loads_types_partitions_ids_and_masks(tmp_path):
    root = make_mvtec_tree(tmp_path / "cat")
    (root / "train" / "good" / "notes.txt").write_text("not an image")
    (root / "train" / "good" / ".hidden.png").write_bytes(b"junk")
    with pytest.warns(UserWarning, match=r"ignored 1 file\(s\).*notes.txt"):
        ds = load_folder(root)

    assert ds.name == "cat" and ds.input_kind == "image" and len(ds) == 6 + 3 + 4 + 3
    assert ds.anomaly_types == ["dent", "scratch"]
    assert ds.type_counts() == {"normal": 9, "scratch": 4, "dent": 3}
    assert (ds.partition == "train").sum() == 6 and (ds.partition == "test").sum() == 10
    assert set(ds.types[ds.partition == "train"]) == {NORMAL_TYPE}
    assert np.array_equal(ds.labels, (ds.types != NORMAL_TYPE).astype(int))
    assert "train/good/000.png" in ds.ids and "test/scratch/001.jpeg" not in ds.ids
    assert all(p.is_absolute() and p.exists() for p in ds.inputs)
    assert not any("notes" in i or "hidden" in i for i in ds.ids)
    # masks: one per anomaly, none for normals
    for path, mask, kind in zip(ds.inputs, ds.masks, ds.types, strict=True):
        if kind == NORMAL_TYPE:
            assert mask is None
        else:
            assert mask is not None and mask.name == f"{path.stem}_mask.png" and mask.parent.name == kind
    assert ds.skipped == ("train/good/notes.txt: extension '.txt' is not read",)


def test_grayscale_and_rgba_images_become_rgb(tmp_path):
    root = make_mvtec_tree(tmp_path / "cat")
    ds = load_folder(root)
    modes = set()
    from PIL import Image

    for path in ds.inputs:
        with Image.open(path) as image:
            modes.add(image.mode)
        assert read_rgb(path).mode == "RGB"
    assert {"L", "RGBA", "RGB"} <= modes


def test_masks_absent_when_no_ground_truth(tmp_path):
    ds = load_folder(make_mvtec_tree(tmp_path / "cat", masks=False))
    assert ds.masks is None


def test_corrupt_image_is_named_or_skipped_and_reported(tmp_path):
    root = make_mvtec_tree(tmp_path / "cat")
    bad = write_corrupt(root / "test" / "dent" / "broken.png")
    with pytest.raises(DataError, match=r"broken\.png") as info:
        load_folder(root)
    assert "skip_bad_images" in str(info.value)

    ds = load_folder(root, skip_bad_images=True)
    assert len(ds) == 16 and "test/dent/broken.png" not in ds.ids
    assert len(ds.skipped) == 1 and ds.skipped[0].startswith("test/dent/broken.png")
    # truncated JPEG: header fine, data cut
    bad.unlink()
    data = (root / "test" / "scratch" / "001.jpg").read_bytes()
    (root / "test" / "scratch" / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.jpg"):
        load_folder(root, skip_bad_images=False)


def test_empty_or_missing_train_good(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_folder(tmp_path / "nowhere")
    root = tmp_path / "cat"
    write_image(root / "test" / "good" / "a.png")
    with pytest.raises(DataError, match=r"missing folder .*train/good"):
        load_folder(root)
    (root / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no readable images"):
        load_folder(root)
    write_corrupt(root / "train" / "good" / "only.png")
    with pytest.raises(DataError, match=r"1 unreadable images were skipped"):
        load_folder(root, skip_bad_images=True)


def test_anomalies_under_train_and_reserved_names_are_rejected(tmp_path):
    root = make_mvtec_tree(tmp_path / "cat")
    write_image(root / "train" / "scratch" / "x.png")
    with pytest.raises(DataError, match=r"besides 'good'"):
        load_folder(root)
    root = make_mvtec_tree(tmp_path / "cat2")
    write_image(root / "test" / "normal" / "x.png")
    with pytest.raises(DataError, match=r"reserved"):
        load_folder(root)


def test_no_verify_defers_decoding(tmp_path):
    root = make_mvtec_tree(tmp_path / "cat")
    write_corrupt(root / "test" / "dent" / "broken.png")
    ds = load_folder(root, verify=False)
    assert "test/dent/broken.png" in ds.ids
    with pytest.raises(DataError, match=r"broken\.png"):
        read_rgb(ds.inputs[ds.ids.index("test/dent/broken.png")])
