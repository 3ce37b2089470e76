"""End-to-end base training: the backbone learns, its fingerprint follows, AHL sees its features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ahl_plugins.detector import OSADDetector
from ahl_plugins.errors import DataError, InvalidOptionsError
from ahl_plugins.features.pipeline import extract_features
from ahl_plugins.plugins import get_manager
from ahl_plugins.seeding import seeded
from ahl_plugins.training.finetune import FinetuneOptions, finetune_backbone
from builtin_plugins.extractors import TorchvisionOptions
from builtin_plugins.extractors.torchvision_cnn import TorchvisionExtractor
from tests.finetune.conftest import AHL_FAST, FAST, TINY_RESNET


def _parts():
    manager = get_manager()
    extractor = TorchvisionExtractor("resnet18", TorchvisionOptions(**TINY_RESNET))
    entry = manager.get("scorers", "dra")
    with seeded(0):
        scorer = entry.factory(extractor.spec, entry.parse_options({}))
    loss_entry = manager.get("losses", "dra")
    return extractor, scorer, loss_entry.factory(loss_entry.parse_options({}))


def _images():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(18, 3, 32, 32, generator=generator)
    images[12:, :, 8:16, 8:16] = 1.0
    return images, torch.tensor([0] * 12 + [1] * 3 + [2] * 3)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_finetuning_trains_the_backbone_and_renames_its_features():
    extractor, scorer, loss = _parts()
    before, fingerprint = _state(extractor.model), extractor.fingerprint()
    images, labels = _images()
    result = finetune_backbone(extractor, scorer, loss, images, labels, FinetuneOptions(**FAST), seed=0)
    after = extractor.model.state_dict()
    changed = [k for k in before if not k.endswith("num_batches_tracked") and not torch.equal(before[k], after[k])]
    assert "conv1.weight" in changed and "layer3.1.conv2.weight" in changed
    # BatchNorm statistics stay frozen; only weights (and BN affine parameters) learn.
    assert all(torch.equal(before[k], after[k]) for k in before if k.endswith(("running_mean", "running_var")))
    assert extractor.fingerprint() != fingerprint and f"finetuned:{result['weights']}" in extractor.fingerprint()
    assert not any(p.requires_grad for p in extractor.model.parameters())
    assert len(result["epochs"]) == 2 and result["epochs"][0]["backbone_lr"] < result["epochs"][0]["lr"]


def test_finetuned_dra_keeps_its_whole_reference_bank_and_calibrated_heads():
    """DRA's nearest-normal bank holds every normal it would keep on frozen features (not the paper's 5), computed
    by the final network, and its heads are calibrated on the normals as the other trainers do."""
    extractor, scorer, loss = _parts()
    images, labels = _images()
    finetune_backbone(extractor, scorer, loss, images, labels, FinetuneOptions(**FAST), seed=0)
    normals = images[labels == 0]
    assert scorer.reference_normals >= len(normals)
    bank = scorer.reference(0)
    assert bank.shape[0] == len(normals)
    with torch.no_grad():
        final = extractor.forward_features(normals)[0]
    torch.testing.assert_close(torch.sort(bank.flatten(1).sum(1)).values, torch.sort(final.flatten(1).sum(1)).values)
    assert not torch.equal(scorer.head_scale, torch.ones_like(scorer.head_scale))
    assert not torch.equal(scorer.head_center, torch.zeros_like(scorer.head_center))


def test_batchnorm_statistics_update_when_not_frozen():
    extractor, scorer, loss = _parts()
    before = _state(extractor.model)
    images, labels = _images()
    options = FinetuneOptions(**FAST, freeze_batchnorm=False)
    finetune_backbone(extractor, scorer, loss, images, labels, options, seed=0)
    assert not torch.equal(before["bn1.running_mean"], extractor.model.state_dict()["bn1.running_mean"])


def test_finetuning_is_deterministic_under_a_seed():
    results = []
    for _ in range(2):
        extractor, scorer, loss = _parts()
        images, labels = _images()
        results.append(finetune_backbone(extractor, scorer, loss, images, labels, FinetuneOptions(**FAST), seed=3))
    assert results[0]["weights"] == results[1]["weights"]


def test_ahl_sees_the_finetuned_features_and_reuses_the_finetuning(tiles, tmp_path, monkeypatch):
    paths, labels = tiles
    common = {
        "extractor": "resnet18",
        "extractor_options": TINY_RESNET,
        "n_pseudo": 6,
        "cache_dir": str(tmp_path / "c"),
    }
    base = OSADDetector("dra", finetune_backbone=True, **common, finetune_options=FAST).fit(paths, labels)
    assert base.fit_info_["finetune"]["cached"] is False
    again = OSADDetector("dra", finetune_backbone=True, **common, finetune_options=FAST).fit(paths, labels)
    assert again.fit_info_["finetune"]["cached"] is True  # network and heads restored from the cache
    np.testing.assert_array_equal(again.decision_function(paths), base.decision_function(paths))

    from ahl_plugins.ahl import guard as trainer  # the detector runs AHL through the guard's train_ahl

    seen = {}
    original = trainer.train_ahl

    def spy(scorer, loss, data, *args, **kwargs):
        seen["normals"] = data.normals.scales[0].clone()
        return original(scorer, loss, data, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_ahl", spy)
    ahl = OSADDetector("dra", ahl=True, finetune_backbone=True, **common, **AHL_FAST, finetune_options=FAST)
    ahl.fit(paths, labels)
    # Same split, options and seed: the fine-tuning is read back from the cache, not repeated.
    assert ahl.fit_info_["finetune"] == {**base.fit_info_["finetune"], "cached": True}
    normal_paths = [p for p, y in zip(paths, labels, strict=True) if y == 0]
    tuned = extract_features(ahl.extractor_, normal_paths).scales[0]
    pretrained = extract_features(TorchvisionExtractor("resnet18", TorchvisionOptions(**TINY_RESNET)), normal_paths)
    assert torch.allclose(seen["normals"], tuned, atol=1e-5)
    assert not torch.allclose(seen["normals"], pretrained.scales[0], atol=1e-3)


def test_saved_detector_holds_the_finetuned_backbone_and_scores_identically(tiles, tmp_path):
    paths, labels = tiles
    detector = OSADDetector(
        "devnet",
        finetune_backbone=True,
        extractor="resnet18",
        extractor_options=TINY_RESNET,
        n_pseudo=6,
        use_cache=False,
        finetune_options=FAST,
    ).fit(paths, labels)
    scores = detector.decision_function(paths)
    detector.save(tmp_path / "model")
    saved = load_file(str(tmp_path / "model" / "extractor.safetensors"))
    assert "backbone.conv1.weight" in saved
    loaded = OSADDetector.load(tmp_path / "model")
    assert loaded.extractor_.fingerprint() == detector.extractor_.fingerprint()
    np.testing.assert_array_equal(loaded.decision_function(paths), scores)


def test_finetuning_refuses_vectors_and_stray_options():
    X = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    y = np.r_[np.zeros(27), np.ones(3)].astype(int)
    with pytest.raises(DataError, match="image backbone"):
        OSADDetector("devnet", finetune_backbone=True, use_cache=False, finetune_options=FAST).fit(X, y)
    with pytest.raises(InvalidOptionsError, match="finetune_backbone=True"):
        OSADDetector("devnet", backbone_lr=1e-5)
    with pytest.raises(InvalidOptionsError, match="backbone_lr"):
        OSADDetector("devnet", finetune_backbone=True, backbone_lr=-1.0)


def test_a_changed_scorer_default_misses_the_finetuning_cache(tiles, tmp_path, monkeypatch):
    """The cache key holds every option the heads run with, defaults included, not only those set by name:
    a release that changes a head default must not read back a backbone fine-tuned with the old heads."""
    import dataclasses

    from builtin_plugins.dra import DRAOptions

    class WiderTopK(DRAOptions):  # a release that pools more positions: the same shapes, other heads
        topk_ratio: float = 0.5

    paths, labels = tiles
    common = {
        "extractor": "resnet18",
        "extractor_options": TINY_RESNET,
        "n_pseudo": 6,
        "cache_dir": str(tmp_path / "c"),
    }
    first = OSADDetector("dra", finetune_backbone=True, **common, finetune_options=FAST).fit(paths, labels)
    assert first.fit_info_["finetune"]["cached"] is False
    registry = get_manager().registry("scorers")
    entry = registry.get("dra")
    monkeypatch.setitem(registry._entries, "dra", dataclasses.replace(entry, options=WiderTopK))
    changed = OSADDetector("dra", finetune_backbone=True, **common, finetune_options=FAST).fit(paths, labels)
    assert changed.scorer_.options.topk_ratio == 0.5
    assert changed.fit_info_["finetune"]["cached"] is False
