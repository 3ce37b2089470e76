"""OSADDetector: fit/score/predict, save/load, and the errors users can hit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from detector_testkit import FAST

from ahl_plugins import OSADDetector
from ahl_plugins.errors import (
    DataError,
    InvalidOptionsError,
    ModelFileError,
    NotFittedError,
    UnknownComponentError,
)
from ahl_plugins.evaluation.metrics import auc_roc


@pytest.mark.parametrize("model", ["devnet", "dra"])
def test_fit_save_load_round_trip_gives_identical_scores(blobs, tmp_path, model):
    X, y, X_test, y_test = blobs
    detector = OSADDetector(model, seed=3, **FAST).fit(X, y)
    scores = detector.decision_function(X_test)
    assert scores.shape == (len(X_test),) and np.isfinite(scores).all()
    detector.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {
        "config.json",
        "scorer.safetensors",
        "extractor.safetensors",
    }
    loaded = OSADDetector.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.decision_function(X_test), scores, rtol=1e-5, atol=1e-5)
    assert loaded.threshold_ == detector.threshold_


def test_scores_separate_shifted_anomalies(blobs):
    X, y, X_test, y_test = blobs
    detector = OSADDetector("devnet", seed=0, epochs=5, batches_per_epoch=10, n_pseudo=16, use_cache=False).fit(X, y)
    assert auc_roc(y_test, detector.decision_function(X_test)) > 0.9


def test_same_seed_same_scores_other_seed_other_scores(blobs):
    X, y, X_test, _ = blobs
    first = OSADDetector("dra", seed=1, **FAST).fit(X, y).decision_function(X_test)
    again = OSADDetector("dra", seed=1, **FAST).fit(X, y).decision_function(X_test)
    other = OSADDetector("dra", seed=2, **FAST).fit(X, y).decision_function(X_test)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_predict_flags_about_contamination_of_training_normals(blobs):
    X, y, _, _ = blobs
    detector = OSADDetector("devnet", contamination=0.1, **FAST).fit(X, y)
    flagged = detector.predict(X[y == 0]).mean()
    assert 0.05 <= flagged <= 0.15
    assert set(np.unique(detector.predict(X))) <= {0, 1}


def test_tensor_and_list_inputs_are_accepted(blobs):
    X, y, X_test, _ = blobs
    detector = OSADDetector("devnet", **FAST).fit(torch.from_numpy(X), y.tolist())
    np.testing.assert_allclose(detector.decision_function(torch.from_numpy(X_test)), detector.decision_function(X_test))


def test_flat_options_are_routed_and_unknown_ones_listed():
    detector = OSADDetector("dra", epochs=3, margin=4.0, n_pseudo=5)
    assert detector.config.train_options == {"epochs": 3}
    assert detector.config.n_pseudo == 5
    assert OSADDetector("dra", ahl=True, epochs=3).config.ahl_options == {"epochs": 3}
    with pytest.raises(InvalidOptionsError, match=r"unknown option 'epoch' for model 'devnet'.*epochs"):
        OSADDetector("devnet", epoch=3)


def test_wrong_option_type_gives_the_pydantic_message():
    with pytest.raises(InvalidOptionsError, match=r"invalid TrainOptions for model 'devnet'[\s\S]*epochs"):
        OSADDetector("devnet", epochs="many")


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(UnknownComponentError, match=r"unknown model 'devnt'.*Did you mean: devnet"):
        OSADDetector("devnt")


def test_scoring_before_fit_is_an_error(blobs):
    with pytest.raises(NotFittedError, match="call fit"):
        OSADDetector("devnet").decision_function(blobs[0])


def test_feature_dimension_mismatch_and_empty_input(blobs):
    X, y, _, _ = blobs
    detector = OSADDetector("devnet", **FAST).fit(X, y)
    with pytest.raises(DataError, match="fitted on 8 features, got 5"):
        detector.decision_function(X[:, :5])
    with pytest.raises(DataError, match="empty input"):
        detector.decision_function(np.zeros((0, 8), np.float32))


def test_bad_training_labels(blobs):
    X, y, _, _ = blobs
    with pytest.raises(DataError, match="X has 96 samples but y has 95"):
        OSADDetector("devnet", **FAST).fit(X, y[:-1])
    with pytest.raises(DataError, match="y must hold 0"):
        OSADDetector("devnet", **FAST).fit(X, y * 2)
    with pytest.raises(DataError, match="needs normal training samples"):
        OSADDetector("devnet", **FAST).fit(X[:3], np.ones(3, int))


def test_nan_features_are_reported(blobs):
    X, y, _, _ = blobs
    X = X.copy()
    X[4, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        OSADDetector("devnet", **FAST).fit(X, y)


def test_loading_rejects_other_format_versions_and_broken_files(blobs, tmp_path):
    X, y, _, _ = blobs
    path = OSADDetector("devnet", **FAST).fit(X, y).save(tmp_path / "m")
    with pytest.raises(ModelFileError, match="no config.json"):
        OSADDetector.load(tmp_path / "nothing")
    document = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**document, "format_version": 99}))
    with pytest.raises(ModelFileError, match="format version 99"):
        OSADDetector.load(path)
    (path / "config.json").write_text(json.dumps(document))
    weights = (path / "scorer.safetensors").read_bytes()
    (path / "scorer.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ModelFileError, match="scorer.safetensors is damaged"):
        OSADDetector.load(path)
    (path / "scorer.safetensors").unlink()
    with pytest.raises(ModelFileError, match="scorer.safetensors is missing"):
        OSADDetector.load(path)


def test_loading_weights_of_another_model_is_refused(blobs, tmp_path):
    X, y, _, _ = blobs
    devnet = OSADDetector("devnet", **FAST).fit(X, y).save(tmp_path / "devnet")
    dra = OSADDetector("dra", **FAST).fit(X, y).save(tmp_path / "dra")
    (devnet / "scorer.safetensors").write_bytes((dra / "scorer.safetensors").read_bytes())
    with pytest.raises(ModelFileError, match="scorer.safetensors is damaged"):
        OSADDetector.load(devnet)
    document = json.loads((devnet / "config.json").read_text())
    del document["checksum"]
    (devnet / "config.json").write_text(json.dumps({**document, "files": {}}))  # as saved before checksums
    with pytest.raises(ModelFileError, match="does not match model 'devnet'"):
        OSADDetector.load(devnet)


def test_a_users_own_module_is_a_frozen_extractor(mvtec_tree):
    backbone = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, stride=2)
    )
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    paths = sorted((mvtec_tree / "train" / "good").glob("*.png")) + sorted(
        (mvtec_tree / "test" / "scratch").glob("*.png")
    )
    y = np.r_[np.zeros(24), np.ones(6)].astype(int)
    detector = OSADDetector("devnet", extractor=backbone, **FAST).fit(paths, y)
    assert detector.fit_info_["feature_spec"] == {"kind": "map", "channels": [8]}
    assert detector.decision_function(paths[:4]).shape == (4,)
    assert all(torch.equal(before[k], v) for k, v in backbone.state_dict().items())


@pytest.mark.parametrize("ablation", ["none", "ensemble"])
def test_ahl_detector_round_trip(blobs, tmp_path, ablation):
    X, y, X_test, _ = blobs
    detector = OSADDetector("dra", ahl=True, ablation=ablation, **FAST).fit(X, y)
    assert detector.history_["n_tasks"] == detector.fit_info_["n_tasks"] >= 2
    scores = detector.decision_function(X_test)
    loaded = OSADDetector.load(detector.save(tmp_path / "m"))
    np.testing.assert_allclose(loaded.decision_function(X_test), scores, rtol=1e-5, atol=1e-5)


def test_batch_size_reaches_the_trainer_not_the_extractor():
    assert OSADDetector("devnet", batch_size=24).config.train_options == {"batch_size": 24}
    assert OSADDetector("devnet", extract_batch_size=8).config.extract_batch_size == 8
