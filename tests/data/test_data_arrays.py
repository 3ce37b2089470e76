from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from ahl_plugins.data.arrays import from_arrays, load_npz
from ahl_plugins.data.tables import load_table, read_table
from ahl_plugins.data.tabular import TabularEncoder, refit_encoding
from ahl_plugins.errors import DataError


def test_from_arrays_defaults_and_types():
    X = np.arange(12, dtype=np.float64).reshape(6, 2)
    ds = from_arrays(X, [0, 0, 1, 0, 1, 1], ["x", "x", "cut", "x", "hole", "cut"])
    assert ds.input_kind == "vector" and ds.inputs.dtype == np.float32 and ds.inputs.shape == (6, 2)
    assert ds.types.tolist() == ["normal", "normal", "cut", "normal", "hole", "cut"]
    assert ds.ids == [f"row:{i}" for i in range(6)] and set(ds.partition) == {"any"}
    assert ds.anomaly_types == ["cut", "hole"]
    plain = from_arrays(X, np.array([0, 1, 0, 0, 0, 1], dtype=bool))
    assert plain.anomaly_types == ["anomaly"]
    sub = ds.subset([4, 0])
    assert sub.ids == ["row:4", "row:0"] and sub.labels.tolist() == [1, 0] and np.array_equal(sub.inputs, X[[4, 0]])
    assert np.array_equal(ds.select_inputs(np.array([False, True, False, False, False, True])), X[[1, 5]])


def test_from_arrays_reports_bad_input():
    X = np.zeros((5, 3))
    with pytest.raises(DataError, match=r"X has 5 rows but y has 4 labels"):
        from_arrays(X, [0, 1, 0, 0])
    with pytest.raises(DataError, match=r"found values \[0, 1, 2\]"):
        from_arrays(X, [0, 1, 2, 0, 0])
    with pytest.raises(DataError, match=r"2-D"):
        from_arrays(np.zeros(5), [0] * 5)
    bad = X.copy()
    bad[1, 2] = np.nan
    bad[3, 0] = np.inf
    with pytest.raises(DataError, match=r"rows 1, 3\).*columns \(f0, f2\)"):
        from_arrays(bad, [0, 1, 0, 0, 0], feature_names=["f0", "f1", "f2"])
    with pytest.raises(DataError, match=r"type must be non-empty"):
        from_arrays(X, [0, 1, 0, 0, 1], ["normal", "a", "normal", "normal", "normal"])
    with pytest.raises(DataError, match=r"4 types for 5 rows"):
        from_arrays(X, [0, 1, 0, 0, 1], ["n", "a", "n", "a"])


def test_npz_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 3))
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    path = tmp_path / "set.npz"
    np.savez(path, X=X, y=y, types=np.array(["normal"] * 5 + ["p", "q", "p"]))
    ds = load_npz(path)
    assert ds.name == "set" and np.allclose(ds.inputs, X) and ds.anomaly_types == ["p", "q"]
    np.savez(tmp_path / "bad.npz", X=X, labels=y)
    with pytest.raises(DataError, match=r"no array 'y'; the archive holds \['X', 'labels'\]"):
        load_npz(tmp_path / "bad.npz")
    assert load_npz(tmp_path / "bad.npz", y_key="labels").anomaly_types == ["anomaly"]
    (tmp_path / "junk.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"cannot read .*junk\.npz"):
        load_npz(tmp_path / "junk.npz")


def _write_csv(path, rows, header="proto,size,kind,split,label"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


ROWS = [
    "tcp,1.0,normal,train,0",
    "udp,2.0,normal,train,0",
    "tcp,3.5,normal,train,0",
    "udp,0.5,smurf,train,1",
    "icmp,9.0,normal,test,0",
    "tcp,7.0,smurf,test,1",
    "icmp,8.0,probe,test,1",
]


def test_csv_categorical_one_hot_fitted_on_training_rows(tmp_path):
    path = _write_csv(tmp_path / "net.csv", ROWS)
    ds = load_table(path, label_column="label", type_column="kind", partition_column="split")
    assert ds.feature_names == ["proto=tcp", "proto=udp", "size"]
    assert ds.partition.tolist() == ["train"] * 4 + ["test"] * 3
    assert ds.types.tolist() == ["normal"] * 3 + ["smurf", "normal", "smurf", "probe"]
    # "icmp" occurs only in test rows: all zeros in its group, never a column of its own
    assert ds.inputs[4].tolist() == [0.0, 0.0, 9.0]
    assert ds.inputs[0].tolist() == [1.0, 0.0, 1.0]
    assert ds.info["encoder_fitted_on"] == "train partition"
    # the encoder survives JSON and re-applies to new raw rows
    restored = TabularEncoder.from_dict(json.loads(json.dumps(ds.encoder.to_dict())))
    new = restored.transform({"proto": ["udp", "gre"], "size": ["4", "5"]})
    assert new.tolist() == [[0.0, 1.0, 4.0], [0.0, 0.0, 5.0]]
    # strict refit on chosen rows (as a split's training rows)
    refit = refit_encoding(ds, [0, 4])
    assert refit.feature_names == ["proto=icmp", "proto=tcp", "size"] and refit.inputs[1].tolist() == [0.0, 0.0, 2.0]


def test_csv_without_partition_and_auto_label(tmp_path):
    path = _write_csv(
        tmp_path / "net.csv",
        [r.rsplit(",", 2)[0] + "," + r.rsplit(",", 1)[1] for r in ROWS],
        header="proto,size,kind,label",
    )
    ds = load_table(path)  # 'label' column found, categorical 'proto' and 'kind' detected
    assert ds.info["label_column"] == "label" and set(ds.partition) == {"any"}
    assert ds.anomaly_types == ["anomaly"]
    assert ds.info["categorical"] == ["proto", "kind"] and "refit_encoding" in ds.info["encoder_fitted_on"]
    typed = load_table(path, type_column="kind")
    assert typed.anomaly_types == ["probe", "smurf"] and "kind=smurf" not in typed.feature_names


def test_tsv_gz_with_named_labels(tmp_path):
    path = tmp_path / "t.tsv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("a\tb\tclass\n1\t2\tnormal\n3\t4\tdos\n5\t6\tnormal\n7\t8\tprobe\n")
    ds = load_table(path, label_column="class")
    assert ds.labels.tolist() == [0, 1, 0, 1] and ds.anomaly_types == ["dos", "probe"]
    multi = load_table(path, label_column="class", normal_labels=["normal", "dos"])
    assert multi.anomaly_types == ["probe"]
    names, table = read_table(path)
    assert names == ["a", "b", "class"] and table["b"].tolist() == ["2", "4", "6", "8"]


def test_table_errors_name_columns_rows_and_values(tmp_path):
    path = _write_csv(tmp_path / "net.csv", ROWS)
    with pytest.raises(
        DataError, match=r"unknown label column 'lbl'; columns are \['proto', 'size', 'kind', 'split', 'label'\]"
    ):
        load_table(path, label_column="lbl")
    with pytest.raises(DataError, match=r"unknown type column 'type'"):
        load_table(path, label_column="label", type_column="type")
    with pytest.raises(DataError, match=r"normal label\(s\) \['2'\] do not occur"):
        load_table(path, label_column="label", normal_labels=[2])
    with pytest.raises(DataError, match=r"cannot tell which values of column 'kind' are normal|which column holds"):
        load_table(_write_csv(tmp_path / "k.csv", ["1,a", "2,b"], header="x,kind"), label_column="kind")
    nan_rows = ["tcp,1.0,0", "udp,?,1", "tcp,nan,0", "tcp,2,0"]
    with pytest.raises(DataError, match=r"rows 1, 2\).*columns \(size\)"):
        load_table(_write_csv(tmp_path / "n.csv", nan_rows, header="proto,size,label"))
    typo = [f"tcp,{i},0" for i in range(20)] + ["tcp,1.2.3,1"]
    with pytest.raises(DataError, match=r"column 'size' looks numeric but rows \[20\] hold '1.2.3'"):
        load_table(_write_csv(tmp_path / "t.csv", typo, header="proto,size,label"))
    (tmp_path / "ragged.csv").write_text("a,b,label\n1,2,0\n3,1\n")
    with pytest.raises(DataError, match=r"do not have 3 fields"):
        load_table(tmp_path / "ragged.csv")
    with pytest.raises(DataError, match=r"partition values \['later'\]"):
        load_table(
            _write_csv(tmp_path / "p.csv", ["1,later,0", "2,train,1"], header="x,split,label"), partition_column="split"
        )


def test_encoder_rejects_unknown_or_missing_columns():
    enc = TabularEncoder.fit({"c": ["x", "y"], "n": ["1", "2"]}, ["c"])
    with pytest.raises(DataError, match=r"lacks columns \['n'\]"):
        enc.transform({"c": ["x"]})
    with pytest.raises(DataError, match=r"categorical columns \['zz'\] not in the table"):
        TabularEncoder.fit({"c": ["x"]}, ["zz"])
    with pytest.raises(DataError, match=r"not a saved tabular encoder"):
        TabularEncoder.from_dict({"kind": "other"})
