"""Smoke tests on the real data in ``<repo>/../shared/data`` (skipped where it is absent)."""

from __future__ import annotations

import pytest
from data_testkit import SHARED_DATA

from ahl_plugins.data.load import load_dataset
from ahl_plugins.data.nsl_kdd import unseen_attack_names
from ahl_plugins.data.protocols import make_split

MT = SHARED_DATA / "mt"
NSL_KDD = SHARED_DATA / "tabular" / "nsl_kdd"
PMLB = SHARED_DATA / "tabular" / "pmlb"


def _need(path):
    if not path.exists():
        pytest.skip(f"real data not available at {path} (a fresh clone has no ../shared/data)")


def test_mt_folder_counts_and_hard_split():
    _need(MT)
    ds = load_dataset(MT)
    assert ds.skipped == ()
    train, test = ds.partition == "train", ds.partition == "test"
    assert int((train & (ds.labels == 0)).sum()) == 714 and int((test & (ds.labels == 0)).sum()) == 238
    assert ds.type_counts() == {"normal": 952, "blowhole": 115, "break": 85, "crack": 57, "fray": 32, "uneven": 103}
    assert all(m is not None for m, label in zip(ds.masks, ds.labels, strict=True) if label == 1)
    split = make_split(ds, "hard", 10, "crack", seed=0)
    assert split.summary()["test"] == {
        "normal": 238,
        "anomalies": {"blowhole": 115, "break": 85, "fray": 32, "uneven": 103},
        "total": 573,
    }


@pytest.mark.slow
def test_nsl_kdd_counts_per_group():
    _need(NSL_KDD)
    ds = load_dataset(NSL_KDD)
    counts = {}
    for part in ("train", "test"):
        sub = ds.subset(ds.partition == part)
        counts[part] = sub.type_counts()
    assert counts["train"] == {"normal": 13449, "DoS": 9234, "Probe": 2289, "R2L": 209, "U2R": 11}
    assert counts["test"] == {"normal": 9711, "DoS": 7458, "Probe": 2421, "R2L": 2754, "U2R": 200}
    # 18 test attack names never occur in the 20% training file (17 against the full KDDTrain+)
    assert len(unseen_attack_names(ds)) == 18 and "mscan" in unseen_attack_names(ds)
    split = make_split(ds, "hard", 10, "DoS", seed=0)
    assert split.summary()["train"]["normal"] == 13449
    assert split.summary()["test"]["anomalies"] == {"Probe": 2421, "R2L": 2754, "U2R": 200}
    tested_names = set(ds.subtypes[split.test_indices].tolist())
    assert set(unseen_attack_names(ds)) - {"apache2", "mailbomb", "processtable", "udpstorm"} <= tested_names


@pytest.mark.parametrize(
    "name, counts",
    [
        ("ann_thyroid", {"normal": 6666, "class_1": 166, "class_2": 368}),
        ("page_blocks", {"normal": 4913, "class_2": 329, "class_3": 28, "class_4": 88, "class_5": 115}),
        ("satimage", {"normal": 4399, "class_2": 703, "class_4": 626, "class_5": 707}),
    ],
)
def test_pmlb_counts(name, counts):
    path = PMLB / f"{name}.tsv.gz"
    _need(path)
    assert load_dataset(path).type_counts() == counts
