"""The demo's data: the digits OSAD split the demo runs on."""

from __future__ import annotations

import numpy as np

from ahl_plugins.data.digits import (
    ANOMALY_DIGITS,
    DEMO_N_ANOMALIES,
    DEMO_SEEN_TYPE,
    NORMAL_DIGITS,
    load_digits_osad,
    make_demo_split,
)


def test_demo_classes_are_disjoint_and_counted():
    assert not set(NORMAL_DIGITS) & set(ANOMALY_DIGITS)
    data = load_digits_osad()
    counts = data.type_counts()
    assert counts["normal"] == 1264 and sum(counts[f"digit_{d}"] for d in ANOMALY_DIGITS) == 533
    assert data.anomaly_types == [f"digit_{d}" for d in ANOMALY_DIGITS]


def test_demo_split_seen_and_unseen_types_are_disjoint():
    data = load_digits_osad()
    split = make_demo_split(seed=1, dataset=data)
    labelled = split.labelled_indices
    assert len(labelled) == DEMO_N_ANOMALIES
    assert set(data.types[labelled]) == {DEMO_SEEN_TYPE}
    test_anomaly_types = set(split.test_types[split.test_labels == 1])
    assert DEMO_SEEN_TYPE not in test_anomaly_types
    assert test_anomaly_types == {f"digit_{d}" for d in ANOMALY_DIGITS} - {DEMO_SEEN_TYPE}
    assert not np.intersect1d(split.train_indices, split.test_indices).size
    n_normals = int((data.labels == 0).sum())
    assert int((split.train_labels == 0).sum()) + int((split.test_labels == 0).sum()) == n_normals
    assert int((split.test_labels == 0).sum()) == round(0.25 * n_normals)


def test_demo_split_is_seeded():
    data = load_digits_osad()
    a, b, c = (make_demo_split(seed=s, dataset=data) for s in (0, 0, 1))
    assert np.array_equal(a.train_indices, b.train_indices)
    assert not np.array_equal(a.train_indices, c.train_indices)


def test_demo_runs_the_compare_it_describes():
    from ahl_plugins.cli.compare import demo_config
    from ahl_plugins.evaluation.compare import CompareConfig

    config = CompareConfig(**demo_config())
    assert config.data == "digits" and config.models == ["devnet", "dra"]
    assert config.settings == ["hard"] and config.anomaly_types == [DEMO_SEEN_TYPE] and config.seeds == 3
    assert config.n_anomalies == [DEMO_N_ANOMALIES]
    # the models' own (paper) training length, no reduction, single-threaded for speed
    assert config.epochs is None and config.options == {} and config.ahl_options == {} and config.threads == 1
