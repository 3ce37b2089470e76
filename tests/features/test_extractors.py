"""The built-in extractors: shapes, frozen and deterministic, weights files, identity standardisation."""

from __future__ import annotations

import subprocess
import sys
import urllib.error

import numpy as np
import pytest
import torch

from ahl_plugins.errors import DataError, InvalidOptionsError, NotFittedError
from builtin_plugins.extractors import IdentityOptions, TorchvisionOptions
from builtin_plugins.extractors.identity import IdentityExtractor
from builtin_plugins.extractors.torchvision_cnn import TorchvisionExtractor


def _resnet(**options) -> TorchvisionExtractor:
    options.setdefault("weights", "none")
    options.setdefault("image_size", 64)
    return TorchvisionExtractor("resnet18", TorchvisionOptions(**options))


def _batch(n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_resnet18_two_scale_shapes_and_frozen(tiny_resnet):
    assert tiny_resnet.spec.kind == "map" and tiny_resnet.spec.channels == (512, 512)
    out = tiny_resnet.extract(_batch())
    assert [tuple(t.shape) for t in out] == [(2, 512, 2, 2), (2, 512, 1, 1)]
    assert not tiny_resnet.model.training
    assert not any(p.requires_grad for p in tiny_resnet.model.parameters())
    assert not any(t.is_inference() or t.requires_grad for t in out)
    # Heads train on these features: they must be usable in autograd.
    head = torch.nn.Conv2d(512, 1, 1)
    head(out[0]).sum().backward()
    assert head.weight.grad is not None


def test_layer_taps_are_ordered_scale_major():
    extractor = _resnet(layers=["layer4", "layer3"])
    assert extractor.tap_names == ("layer3", "layer4") and extractor.spec.channels == (256, 512, 256, 512)
    shapes = [tuple(t.shape[1:]) for t in extractor.extract(_batch(1))]
    assert shapes == [(256, 4, 4), (512, 2, 2), (256, 2, 2), (512, 1, 1)]
    single = _resnet(layers="layer2", scales=1)
    assert [tuple(t.shape[1:]) for t in single.extract(_batch(1))] == [(128, 8, 8)]
    assert not hasattr(single.model, "layer3"), "stages after the deepest tap are dropped"


def test_random_init_is_deterministic_and_in_the_fingerprint(tiny_resnet):
    again = _resnet()
    assert again.fingerprint() == tiny_resnet.fingerprint()
    assert torch.equal(again.extract(_batch())[0], tiny_resnet.extract(_batch())[0])
    other = _resnet(init_seed=1)
    assert other.fingerprint() != tiny_resnet.fingerprint()
    assert not torch.equal(other.extract(_batch())[0], tiny_resnet.extract(_batch())[0])
    state = torch.get_rng_state()
    _resnet(scales=1)
    assert torch.equal(state, torch.get_rng_state()), "building must not move the global RNG"


def test_fingerprint_tracks_every_option(tiny_resnet):
    prints = {
        tiny_resnet.fingerprint(),
        _resnet(image_size=96).fingerprint(),
        _resnet(scales=1).fingerprint(),
        _resnet(layers=["layer3", "layer4"]).fingerprint(),
    }
    assert len(prints) == 4
    assert "none:seed=0" in tiny_resnet.fingerprint() and "mean(0.485, 0.456, 0.406)" in tiny_resnet.fingerprint()


def test_local_weights_file_round_trip(tmp_path):
    source = TorchvisionExtractor("resnet18", TorchvisionOptions(weights="none", image_size=64, init_seed=5))
    state = {k: v.clone() for k, v in source.model.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)  # a full checkpoint
    torch.save(state, tmp_path / "r18.pt")
    loaded = _resnet(weights=str(tmp_path / "r18.pt"))
    assert torch.equal(loaded.extract(_batch())[0], source.extract(_batch())[0])
    assert "weights=file:" in loaded.fingerprint()

    from safetensors.torch import save_file

    save_file({f"module.{k}": v for k, v in source.model.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    prefixed = _resnet(weights=str(tmp_path / "r18.safetensors"))
    assert torch.equal(prefixed.extract(_batch())[1], source.extract(_batch())[1])
    assert prefixed.fingerprint() != loaded.fingerprint()  # a different file, a different identity


def test_mismatched_weights_file_names_file_and_keys(tmp_path, tiny_resnet):
    path = tmp_path / "resnet18_weights.pt"
    torch.save(tiny_resnet.model.state_dict(), path)
    with pytest.raises(DataError) as info:
        TorchvisionExtractor("resnet50", TorchvisionOptions(weights=str(path), image_size=64))
    message = str(info.value)
    assert "resnet18_weights.pt" in message and "resnet50" in message
    assert "missing keys" in message and "layer1.0.conv3.weight" in message

    wrong_shape = dict(tiny_resnet.model.state_dict())
    wrong_shape["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    torch.save(wrong_shape, path)
    with pytest.raises(DataError, match=r"shape mismatches.*conv1\.weight"):
        _resnet(weights=str(path))


def test_unusable_weights_files(tmp_path):
    with pytest.raises(InvalidOptionsError, match="weights file not found"):
        _resnet(weights=str(tmp_path / "missing.pt"))
    pickled = tmp_path / "pickled.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole pickled module: refused by weights_only
    with pytest.raises(DataError, match="cannot read weights file"):
        _resnet(weights=str(pickled))


def test_imagenet_download_failure_says_what_to_do(monkeypatch):
    from torchvision.models import ResNet18_Weights

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(DataError) as info:
        _resnet(weights="imagenet")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and "weights=" in message and "efficientnet_lite0" in message
    with pytest.raises(InvalidOptionsError, match="IMAGENET1K_V1"):
        _resnet(weights="imagenet:NOT_A_MEMBER")


def test_options_reject_misspellings():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        TorchvisionOptions(layer="layer3")
    with pytest.raises(ValidationError):
        TorchvisionOptions(layers=["layer5"])
    with pytest.raises(InvalidOptionsError, match="smaller than 16"):
        _resnet(image_size=32, scales=3)


def test_identity_standardises_on_training_rows_only():
    rng = np.random.default_rng(0)
    train = np.column_stack([rng.normal(3, 2, 500), rng.normal(-1, 0.5, 500), np.full(500, 7.0)])
    test = train[:10] + 100
    extractor = IdentityExtractor()
    extractor.fit(train)
    assert torch.allclose(extractor.mean, torch.tensor(train.mean(0), dtype=torch.float32), atol=1e-5)
    assert torch.allclose(extractor.std[:2], torch.tensor(train.std(0)[:2], dtype=torch.float32), atol=1e-5)
    assert float(extractor.std[2]) == 1.0  # constant column: centred only
    fitted = extractor.fingerprint()
    (out,) = extractor.extract(torch.as_tensor(test))
    assert torch.allclose(out[:, 2], torch.full((10,), 100.0))
    assert extractor.spec.channels == (3,) and extractor.spec.kind == "vector"

    refit = IdentityExtractor()
    refit.fit(np.vstack([train, test]))
    assert refit.fingerprint() != fitted

    restored = IdentityExtractor()
    restored.load_fitted_state(extractor.fitted_state())
    assert restored.fingerprint() == fitted and torch.equal(restored.extract(test)[0], out)

    raw = IdentityExtractor(IdentityOptions(standardize=False))
    raw.fit(train)
    assert torch.allclose(raw.extract(test)[0], torch.as_tensor(test, dtype=torch.float32))


def test_identity_reports_nan_and_misuse():
    rows = np.ones((6, 4))
    rows[2, 1] = np.nan
    rows[4, 3] = np.inf
    extractor = IdentityExtractor()
    with pytest.raises(DataError, match=r"row\(s\) \[2, 4\] and column\(s\) \[1, 3\]"):
        extractor.fit(rows)
    with pytest.raises(NotFittedError):
        extractor.extract(np.ones((2, 4)))
    with pytest.raises(NotFittedError):
        extractor.fingerprint()
    extractor.fit(np.ones((3, 4)))
    with pytest.raises(DataError, match="input rows hold"):
        extractor.extract(rows)
    with pytest.raises(DataError, match="fitted on 4"):
        extractor.extract(np.ones((2, 5)))


def test_plugins_register_and_stay_light(fresh_manager):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # other built-ins may still be under construction
        manager = fresh_manager()
    extractors = manager.registry("feature_extractors")
    for name in ("resnet18", "resnet50", "wide_resnet50_2", "efficientnet_lite0", "identity"):
        assert extractors.get(name).plugin == "builtin_plugins.extractors"
    generators = manager.registry("pseudo_anomaly_generators")
    for name in ("cutpaste", "cutmix", "draem", "feature_swap", "feature_shift"):
        assert generators.get(name).plugin == "builtin_plugins.pseudo_anomalies"
    entry = extractors.get("resnet18")
    with pytest.raises(InvalidOptionsError, match="valid options"):
        entry.parse_options({"wieghts": "none"})
    built = entry.factory(entry.parse_options({"weights": "none", "image_size": 64, "scales": 1}))
    assert built.spec.channels == (512,)
    assert generators.get("cutmix").factory(None).domain == "image"

    code = (
        "import sys, builtin_plugins.extractors, builtin_plugins.pseudo_anomalies; "
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
