"""Map-statistics image scoring (SegAD-class): the statistics, the fitted classifier on a map-drawing model, its
floor form, saving and loading, determinism, and the errors of models without maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from maps_testkit import FAST, extractor, training_set, write_images
from sklearn.metrics import roc_auc_score
from torch import nn

from ahl_plugins import OSADDetector
from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.features.map_statistics import STATISTICS, map_statistics, normal_thresholds
from ahl_plugins.map_classifier import MapStatisticsClassifier
from ahl_plugins.map_scoring import MapStatisticsScorer
from ahl_plugins.seeding import seeded

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.14 deprecates TorchScript


def test_statistics_of_a_hand_made_map():
    values = torch.arange(20, dtype=torch.float64).reshape(1, 4, 5)  # 0..19
    stats = map_statistics(values, torch.tensor([15.5, 18.5], dtype=torch.float64))[0]
    expected = {
        "max": 19.0,
        "top2%": 19.0,  # int(0.02 * 20) = 0 positions -> at least one
        "top10%": 18.5,  # the top 2 of 20
        "mean": 9.5,
        "median": 9.0,  # the lower middle value of an even count
        "share>q99": 4 / 20,  # 16, 17, 18, 19
        "share>q999": 1 / 20,  # 19
    }
    assert len(stats) == len(STATISTICS)
    for name, value in zip(STATISTICS, stats.tolist(), strict=True):
        assert value == pytest.approx(expected[name]), name


def test_normal_thresholds_are_the_pooled_quantiles():
    maps = torch.arange(1000, dtype=torch.float64).reshape(10, 10, 10)
    np.testing.assert_allclose(normal_thresholds(maps).numpy(), np.quantile(np.arange(1000.0), [0.99, 0.999]))


def _blob_maps(n: int, seed: int, blob: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(n, 8, 8, generator=g, dtype=torch.float64)
    if blob:
        maps[:, 2:5, 3:6] += 2.0
    return maps


def test_classifier_on_hand_made_maps_ranks_a_blob_above_normals():
    classifier = MapStatisticsClassifier(1).fit([_blob_maps(40, 0, False)], [_blob_maps(5, 1, True)], seed=0)
    new = classifier.logits([torch.cat([_blob_maps(20, 2, False), _blob_maps(20, 3, True)])])
    assert roc_auc_score(np.r_[np.zeros(20), np.ones(20)], new.numpy()) == 1.0
    again = MapStatisticsClassifier(1).fit([_blob_maps(40, 0, False)], [_blob_maps(5, 1, True)], seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again.buffers(), classifier.buffers(), strict=True))  # seeded
    # the learned score is in spreads of the training normals
    normals = classifier.learned(classifier.logits([_blob_maps(40, 0, False)]))
    assert abs(float(torch.quantile(normals, 0.5))) < 1e-9


def test_non_negative_weights_stay_non_negative_and_rank_the_blob():
    classifier = MapStatisticsClassifier(1).fit(
        [_blob_maps(40, 0, False)], [_blob_maps(5, 1, True)], seed=0, weights="non_negative"
    )
    assert (classifier.weight >= 0).all() and (classifier.weight > 0).any()
    new = classifier.logits([torch.cat([_blob_maps(20, 2, False), _blob_maps(20, 3, True)])])
    assert roc_auc_score(np.r_[np.zeros(20), np.ones(20)], new.numpy()) == 1.0


def test_classifier_needs_labelled_anomalies():
    with pytest.raises(DataError, match="at least 2 normals and 1 labelled anomaly"):
        MapStatisticsClassifier(1).fit([_blob_maps(40, 0, False)], [_blob_maps(0, 1, True)], seed=0)


def _test_set(tmp_path):
    normals, _ = write_images(tmp_path / "test_normal", 12, seed=7, defect=False)
    blobs, _ = write_images(tmp_path / "test_blob", 12, seed=8, defect=True)
    return normals + blobs, np.r_[np.zeros(12), np.ones(12)]


class LocalMeansByName(nn.Module):
    """The test kit's two-scale local means, by name (a TorchScript network, so the detector can be saved)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"fine": nn.functional.avg_pool2d(x, 4), "coarse": nn.functional.avg_pool2d(x, 8)}


def _saveable_detector(tmp_path, form: str, **options) -> OSADDetector:
    network = tmp_path / "local_means.ts"
    with seeded(0):
        torch.jit.save(torch.jit.script(LocalMeansByName()), str(network))
    own = {"image_size": 64, "layers": ["fine", "coarse"], "mean": None, "std": None}
    return OSADDetector(
        "devnet", extractor=str(network), extractor_options=own, seed=0, map_statistics=form, **{**FAST, **options}
    )


def test_floor_form_ranks_blobs_never_drops_below_its_floor_and_reloads_identically(tmp_path):
    """One DevNet (two scales of local means) with the floor form, on gray noise with bright squares."""
    X, y = training_set(tmp_path)
    quick = {"epochs": 2, "batches_per_epoch": 3, "n_pseudo": 8}
    detector = _saveable_detector(tmp_path, "floor_learned", map_statistics_options={"offset": 1.5}, **quick).fit(X, y)
    paths, labels = _test_set(tmp_path)
    scores = detector.decision_function(paths, check_drift=False)
    assert roc_auc_score(labels, scores) > 0.95
    info = detector.fit_info_["map_statistics"]
    assert info["form"] == "floor_learned" and info["n_normals"] == 30 and info["n_anomalies"] == 6
    assert len(info["coefficients"]) == 2 * len(STATISTICS)  # two scales

    scorer = detector.scorer_
    assert isinstance(scorer, MapStatisticsScorer)
    with torch.no_grad():
        heads = scorer(detector.features(paths).scales)
        floor, score = scorer.floor(heads), scorer.combine(heads)
        own = scorer.base.combine({k: v for k, v in heads.items() if k != "map_statistics"})
    assert (score >= floor).all()
    quiet = scorer.classifier.learned(heads["map_statistics"]) <= 1.5
    assert torch.equal(score[quiet], floor[quiet])  # no evidence beyond the offset: the score is the floor
    assert (~quiet).any() and (score[~quiet] > floor[~quiet]).all()  # the blob images get evidence added
    # the floor is the model's own score, calibrated (monotone): the same ranking
    assert (np.argsort(floor.numpy(), kind="stable") == np.argsort(own.numpy(), kind="stable")).all()

    maps = detector.anomaly_maps(paths[:2])
    assert all(np.isfinite(m).all() and m.std() > 0 for m in maps)  # the model's own maps, on the floor's scale
    detector.save(tmp_path / "model")
    loaded = OSADDetector.load(tmp_path / "model")
    assert loaded.config.map_statistics == "floor_learned"
    assert loaded.config.map_statistics_options == {"offset": 1.5}
    assert loaded.fit_info_["map_statistics"] == info
    np.testing.assert_array_equal(loaded.decision_function(paths, check_drift=False), scores)
    for a, b in zip(loaded.anomaly_maps(paths[:2]), maps, strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.threshold_ == detector.threshold_


@pytest.mark.slow
def test_learned_form_ranks_blobs_reloads_and_is_deterministic_under_a_seed(tmp_path):
    X, y = training_set(tmp_path)
    first = _saveable_detector(tmp_path, "learned").fit(X, y)
    again = _saveable_detector(tmp_path, "learned").fit(X, y)
    paths, labels = _test_set(tmp_path)
    scores = first.decision_function(paths, check_drift=False)
    assert roc_auc_score(labels, scores) > 0.95
    np.testing.assert_array_equal(again.decision_function(paths, check_drift=False), scores)
    assert again.fit_info_["map_statistics"]["coefficients"] == first.fit_info_["map_statistics"]["coefficients"]
    first.save(tmp_path / "model")
    np.testing.assert_array_equal(
        OSADDetector.load(tmp_path / "model").decision_function(paths, check_drift=False), scores
    )
    # with the learned score alone a map is the image's score, constant over the image
    for image_map, score in zip(first.anomaly_maps(paths[:2]), scores[:2], strict=True):
        np.testing.assert_allclose(image_map, score, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_other_map_models_take_the_option(tmp_path):
    """DRA (trained heads, in-sample normals) and residual_patch (nearest-patch maps, normals left out)."""
    X, y = training_set(tmp_path)
    paths, labels = _test_set(tmp_path)
    for model in ("dra", "residual_patch"):
        detector = OSADDetector(model, extractor=extractor(), seed=0, map_statistics="floor_learned", **FAST)
        scores = detector.fit(X, y).decision_function(paths, check_drift=False)
        assert roc_auc_score(labels, scores) > 0.9, model
        assert isinstance(detector.scorer_, MapStatisticsScorer)


def test_vectors_have_no_maps_and_say_so():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    y = np.r_[np.zeros(34), np.ones(6)].astype(int)
    detector = OSADDetector("devnet", seed=0, map_statistics="learned", **FAST)
    with pytest.raises(DataError, match="map_statistics needs anomaly maps.*vector.*map_statistics='off'"):
        detector.fit(X, y)


def test_a_scorer_without_head_maps_is_refused_with_the_fix():
    class NoMaps(nn.Module):
        head_names = ("score",)

        def forward(self, features):
            return {"score": features[0].mean(dim=(1, 2, 3))}

        def combine(self, heads):
            return heads["score"]

    with pytest.raises(InvalidOptionsError, match="no head_maps.*docs/plugins.md.*map_statistics='off'"):
        MapStatisticsScorer(NoMaps(), 1, "learned")  # type: ignore[arg-type]


def test_options_are_checked_when_the_detector_is_built():
    with pytest.raises(InvalidOptionsError, match="need map_statistics='learned' or 'floor_learned'"):
        OSADDetector("devnet", map_statistics_options={"offset": 1.0})
    with pytest.raises(InvalidOptionsError, match="regularization"):
        OSADDetector("devnet", map_statistics="learned", map_statistics_options={"regularization": -1})
    with pytest.raises(InvalidOptionsError):
        OSADDetector("devnet", map_statistics="sometimes")
    default = OSADDetector("devnet")
    assert default.config.map_statistics == "off"  # the option is off unless asked for
