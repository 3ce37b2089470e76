"""The detector's face after the restructure: scikit-learn parameters, raw tables after load, runtime settings
kept out of the model, and one meaning per option whatever other flags are given."""

from __future__ import annotations

import json

import numpy as np
import pytest
from detector_testkit import FAST
from sklearn.base import clone

from ahl_plugins import OSADDetector
from ahl_plugins.errors import InvalidOptionsError


def test_clone_and_set_params_follow_scikit_learn():
    detector = OSADDetector(model="dra", ahl=True, epochs=3, scorer_options={"n_references": 4})
    copy = clone(detector)
    assert copy is not detector and copy.get_params() == detector.get_params()
    assert copy.resolved.trainer.epochs == 3 and copy.resolved.scorer_options.n_references == 4
    assert detector.set_params(epochs=5, seed=2) is detector
    assert detector.resolved.trainer.epochs == 5 and detector.config.seed == 2
    with pytest.raises(InvalidOptionsError, match="epoch"):
        detector.set_params(epoch=1)


def _table(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    return {
        "size": rng.normal(shift, 1.0, n).round(3),
        "proto": rng.choice(["tcp", "udp"], n),
        "rate": rng.normal(0.0, 1.0, n).round(3),
    }


def test_a_detector_fitted_on_a_raw_table_scores_raw_rows_after_load(tmp_path):
    rng = np.random.default_rng(0)
    normal, anomalies = _table(rng, 80, 0.0), _table(rng, 6, 4.0)
    train = {k: np.concatenate([normal[k], anomalies[k]]) for k in normal}
    y = np.r_[np.zeros(80), np.ones(6)].astype(int)
    detector = OSADDetector("devnet", seed=0, **FAST).fit(train, y)
    test = {k: np.concatenate([_table(rng, 10, 0.0)[k], _table(rng, 10, 4.0)[k]]) for k in normal}
    test["proto"][0] = "icmp"  # a category never seen in training encodes as all zeros, not an error
    scores = detector.decision_function(test)
    loaded = OSADDetector.load(detector.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.decision_function(test), scores)
    assert loaded.encoder_.categorical == ["proto"]
    assert scores[10:].mean() > scores[:10].mean()


def test_runtime_settings_are_not_saved_with_the_model(blobs, tmp_path):
    X, y, X_test, _ = blobs
    detector = OSADDetector("devnet", cache_dir=str(tmp_path / "cache"), **FAST).fit(X, y)
    saved = json.loads((detector.save(tmp_path / "model") / "config.json").read_text())["config"]
    assert not {"device", "cache_dir", "use_cache", "progress", "extract_batch_size"} & set(saved)
    loaded = OSADDetector.load(tmp_path / "model", device="cpu", progress=False)
    assert loaded.config.cache_dir is None and loaded.config.use_cache is True  # this machine's defaults
    np.testing.assert_array_equal(loaded.decision_function(X_test), detector.decision_function(X_test))
    with pytest.raises(InvalidOptionsError, match="runtime settings"):
        OSADDetector.load(tmp_path / "model", epochs=3)


def test_an_option_means_the_same_thing_with_or_without_ahl():
    with pytest.raises(InvalidOptionsError, match=r"finetune_options=\{'epochs'"):
        OSADDetector("dra", finetune_backbone=True, epochs=2)
    tuned = OSADDetector("dra", finetune_backbone=True, finetune_options={"epochs": 2}).resolved
    assert tuned.finetune.epochs == 2
    with_ahl = OSADDetector("dra", ahl=True, finetune_backbone=True, epochs=2, finetune_options={"epochs": 3}).resolved
    assert with_ahl.trainer.epochs == 2 and with_ahl.finetune.epochs == 3
    assert OSADDetector("dra", ahl=True, finetune_backbone=True, epochs=2).resolved.finetune.epochs == 30


def test_train_ahl_without_an_estimator_says_how_to_get_one():
    import torch

    from ahl_plugins.ahl import AHLOptions, train_ahl
    from ahl_plugins.features.store import Features
    from ahl_plugins.training.data import TrainingData

    generator = torch.Generator().manual_seed(0)
    data = TrainingData(
        Features((torch.randn(40, 4, generator=generator),)),
        Features((torch.randn(4, 4, generator=generator) + 3,)),
        {},
        ("a",) * 4,
    )
    scorer = OSADDetector("devnet").components.scorer(data.normals.spec)
    loss = OSADDetector("devnet").components.loss()
    with pytest.raises(InvalidOptionsError, match="estimator"):
        train_ahl(scorer, loss, data, AHLOptions(epochs=1, n_clusters=2), seed=0)
