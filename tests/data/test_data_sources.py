from __future__ import annotations

import gzip
import importlib.util
import sys

import numpy as np
import pytest
from data_testkit import make_mvtec_tree, write_image

from ahl_plugins.data.dataset import NORMAL_TYPE, OSADDataset
from ahl_plugins.data.digits import DEMO_SEEN_TYPE, load_digits_osad, make_demo_split
from ahl_plugins.data.elpv import load_elpv
from ahl_plugins.data.load import load_dataset
from ahl_plugins.data.nsl_kdd import FEATURES, load_nsl_kdd, unseen_attack_names
from ahl_plugins.data.pmlb import load_pmlb
from ahl_plugins.data.protocols import make_split
from ahl_plugins.errors import DataError

HAS_ELPV = importlib.util.find_spec("elpv_dataset") is not None


# ------------------------------------------------------------------ digits (the demo)


def test_digits_osad_split_is_documented_one():
    ds = load_digits_osad()
    assert ds.input_kind == "vector" and ds.inputs.shape == (1797, 64)
    assert ds.inputs.min() >= 0.0 and ds.inputs.max() <= 1.0
    assert ds.anomaly_types == ["digit_7", "digit_8", "digit_9"]
    assert (ds.labels == 0).sum() == 1264 and set(ds.partition) == {"any"}
    custom = load_digits_osad(normal_digits=[0, 1], anomaly_digits=None)
    assert custom.anomaly_types == [f"digit_{d}" for d in range(2, 10)] and (custom.labels == 0).sum() == 360
    with pytest.raises(DataError, match="both normal and anomalous"):
        load_digits_osad([1, 2], [2, 3])
    with pytest.raises(DataError, match="0-9"):
        load_digits_osad([1, 12])


def test_demo_split_builder():
    ds = load_digits_osad()
    split = make_demo_split(seed=0, dataset=ds)
    assert split.setting == "hard" and split.seen_types == (DEMO_SEEN_TYPE,) and split.n_anomalies == 10
    assert set(ds.types[split.labelled_indices]) == {DEMO_SEEN_TYPE}
    assert set(split.test_types.tolist()) == {NORMAL_TYPE, "digit_8", "digit_9"}
    assert split.summary()["test"]["anomalies"] == {"digit_8": 174, "digit_9": 180}
    again = make_demo_split(seed=0, dataset=ds)
    other = make_demo_split(seed=1, dataset=ds)
    assert split.to_dict() == again.to_dict() and split.to_dict() != other.to_dict()


# ------------------------------------------------------------------ ELPV


def _fake_elpv(root, rows):
    root.mkdir(parents=True)
    lines = []
    for i, (prob, module) in enumerate(rows):
        write_image(root / "images" / f"cell{i:04d}.png", "L", size=8, seed=i)
        lines.append(f"images/cell{i:04d}.png  {prob}  {module}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_elpv_protocol_on_a_synthetic_package_folder(tmp_path):
    rows = [(0.0, "mono")] * 8 + [(0.0, "poly")] * 4 + [(1.0, "mono")] * 3 + [(1.0, "poly")] * 2
    rows += [(0.3333333333333333, "mono"), (0.6666666666666666, "poly")]
    root = _fake_elpv(tmp_path / "data", rows)
    ds = load_elpv(root, split_seed=0, verify=True)
    assert len(ds) == 17 and ds.info["dropped_uncertain"] == 2
    assert ds.type_counts() == {"normal": 12, "mono": 3, "poly": 2}
    assert (ds.partition[ds.labels == 0] == "test").sum() == 3 and (ds.partition[ds.labels == 0] == "train").sum() == 9
    assert set(ds.partition[ds.labels == 1]) == {"any"}
    assert ds.ids[0] == "images/cell0000.png"
    same = load_elpv(root, split_seed=0)
    moved = load_elpv(root, split_seed=1)
    assert np.array_equal(same.partition, ds.partition) and not np.array_equal(moved.partition, ds.partition)
    assert set(load_elpv(root, split_seed=None).partition) == {"any"}
    split = make_split(ds, "hard", 2, "mono", seed=0)
    assert set(split.test_types.tolist()) == {NORMAL_TYPE, "poly"}
    (root / "images" / "cell0003.png").unlink()
    with pytest.raises(DataError, match=r"1 images listed .* missing"):
        load_elpv(root)


def test_elpv_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "elpv_dataset", None)  # what importlib sees when it is not installed
    with pytest.raises(DataError, match=r"pip install 'ahl-plugins\[elpv\]'"):
        load_dataset("elpv")


@pytest.mark.skipif(
    not HAS_ELPV, reason="optional package elpv-dataset not installed (pip install 'ahl-plugins[elpv]')"
)
def test_elpv_real_package_counts():
    ds = load_dataset("elpv")
    assert ds.type_counts() == {"normal": 1508, "mono": 313, "poly": 402}
    assert (ds.partition == "train").sum() == 1131 and (ds.partition == "test").sum() == 377


# ------------------------------------------------------------------ NSL-KDD and PMLB (synthetic files)


def _kdd_line(proto, service, attack, seed):
    rng = np.random.default_rng(seed)
    numeric = [f"{v:.2f}" for v in rng.random(len(FEATURES) - 4)]
    return ",".join(["0", proto, service, "SF", *numeric, attack, "20"])


def test_nsl_kdd_groups_partitions_and_unseen_names(tmp_path):
    train = [("tcp", "http", "normal"), ("udp", "dns", "normal"), ("tcp", "http", "neptune"), ("tcp", "ftp", "ipsweep")]
    test = [
        ("tcp", "http", "normal"),
        ("icmp", "eco_i", "normal"),
        ("tcp", "http", "mscan"),
        ("tcp", "smtp", "guess_passwd"),
    ]
    (tmp_path / "KDDTrain+_20Percent.txt").write_text("\n".join(_kdd_line(*r, i) for i, r in enumerate(train)) + "\n")
    (tmp_path / "KDDTest+.txt").write_text("\n".join(_kdd_line(*r, 10 + i) for i, r in enumerate(test)) + "\n")
    ds = load_dataset(tmp_path)
    assert ds.name == "nsl_kdd" and ds.types.tolist() == [
        "normal",
        "normal",
        "DoS",
        "Probe",
        "normal",
        "normal",
        "Probe",
        "R2L",
    ]
    assert ds.subtypes.tolist()[6:] == ["mscan", "guess_passwd"]
    assert ds.partition.tolist() == ["train"] * 4 + ["test"] * 4
    assert unseen_attack_names(ds) == ["guess_passwd", "mscan"]
    # one-hot vocabulary from the training file only: icmp / eco_i / smtp have no columns
    assert "protocol_type=tcp" in ds.feature_names and not any("icmp" in f or "smtp" in f for f in ds.feature_names)
    assert ds.inputs.shape == (8, len(FEATURES) - 3 + 2 + 3 + 1)
    (tmp_path / "KDDTest+.txt").write_text(_kdd_line("tcp", "http", "zeroday", 0) + "\n")
    with pytest.raises(DataError, match=r"\['zeroday'\] belong to no group"):
        load_nsl_kdd(tmp_path)


def test_pmlb_classes_become_types(tmp_path):
    path = tmp_path / "page_blocks.tsv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("a\tb\ttarget\n" + "".join(f"{i}\t{i * 2}\t{c}\n" for i, c in enumerate([1, 1, 1, 2, 3, 1, 2, 5])))
    ds = load_dataset(path)
    assert ds.anomaly_types == ["class_2", "class_3", "class_5"] and (ds.labels == 0).sum() == 4
    custom = load_pmlb(path, normal_classes=[1, 2])
    assert custom.anomaly_types == ["class_3", "class_5"]
    other = tmp_path / "mystery.tsv.gz"
    other.write_bytes(path.read_bytes())
    assert load_pmlb(other).info["normal_classes"] == ["1"]


# ------------------------------------------------------------------ dispatcher and dataset checks


def test_load_dataset_dispatch(tmp_path):
    folder = make_mvtec_tree(tmp_path / "cat")
    assert load_dataset(folder).input_kind == "image"
    assert load_dataset(str(folder), skip_bad_images=True).name == "cat"
    np.savez(tmp_path / "e.npz", X=np.ones((3, 2)), y=np.array([0, 0, 1]))
    assert load_dataset(tmp_path / "e.npz").anomaly_types == ["anomaly"]
    (tmp_path / "t.csv").write_text("f,label\n1,0\n2,1\n")
    assert load_dataset(tmp_path / "t.csv").labels.tolist() == [0, 1]
    assert load_dataset("digits").name == "digits"
    ds = load_dataset("digits")
    assert load_dataset(ds) is ds
    with pytest.raises(DataError, match=r"not found.*named sets \['digits', 'elpv'\]"):
        load_dataset("no-such-thing")
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(DataError, match="cannot tell how to load"):
        load_dataset(tmp_path / "x.bin")
    with pytest.raises(DataError, match=r"options accepted here: .*skip_bad_images"):
        load_dataset(folder, bogus=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"missing folder"):
        load_dataset(tmp_path / "empty")


def test_dataset_validates_its_fields():
    base = {
        "name": "d",
        "input_kind": "vector",
        "inputs": np.zeros((3, 2)),
        "ids": ["a", "b", "c"],
        "partition": ["any"] * 3,
    }
    with pytest.raises(DataError, match=r"3 inputs but \{'labels': 2"):
        OSADDataset(labels=[0, 1], types=["normal", "x"], **base)
    with pytest.raises(DataError, match=r"disagree between label and type"):
        OSADDataset(labels=[0, 1, 1], types=["normal", "normal", "x"], **base)
    with pytest.raises(DataError, match=r"partition values \['val'\]"):
        OSADDataset(labels=[0, 1, 1], types=["normal", "x", "x"], **{**base, "partition": ["val"] * 3})
    with pytest.raises(DataError, match=r"ids must be unique"):
        OSADDataset(labels=[0, 1, 1], types=["normal", "x", "x"], **{**base, "ids": ["a", "a", "c"]})
    ds = OSADDataset(labels=[0, 1, 1], types=["normal", "x", "y"], **base)
    assert ds.indices_of(["c", "a"]).tolist() == [2, 0]
    with pytest.raises(DataError, match=r"no samples with ids \['zz'\]"):
        ds.indices_of(["zz"])
    with pytest.raises(DataError, match="must not repeat"):
        ds.subset([0, 0])
