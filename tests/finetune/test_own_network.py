"""Your own trained network as the extractor: an nn.Module, a TorchScript file, or a state dict."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file
from torch import nn

from ahl_plugins.cli import cli
from ahl_plugins.detector import OSADDetector
from ahl_plugins.errors import AHLError, DataError, InvalidOptionsError, ModelFileError
from ahl_plugins.features.module_extractor import ModuleExtractor
from ahl_plugins.features.pipeline import extract_features
from ahl_plugins.seeding import seeded
from builtin_plugins.extractors import TorchvisionOptions
from builtin_plugins.extractors.torchvision_cnn import TorchvisionExtractor
from tests.finetune.conftest import FAST, TINY_RESNET

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.14 deprecates TorchScript

OWN = {"image_size": 32, "layers": ["high"]}
CLI_FAST = ["-o", "epochs=2", "-o", "batches_per_epoch=2", "-o", "batch_size=12", "-o", "n_pseudo=6"]
#: The same with --finetune-backbone: the training options are the fine-tuning stage's.
CLI_FINETUNE_FAST = [
    "--finetune-option",
    "epochs=2",
    "--finetune-option",
    "batches_per_epoch=2",
    "--finetune-option",
    "batch_size=12",
    "-o",
    "n_pseudo=6",
]


class TwoStage(nn.Module):
    """A small CNN that returns its two stages by name, as scripted feature extractors do."""

    def __init__(self) -> None:
        super().__init__()
        self.low = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.high = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low = self.low(x)
        return {"low": low, "high": self.high(low)}


@pytest.fixture
def torchscript_file(tmp_path):
    with seeded(0):
        module = TwoStage()
    path = tmp_path / "own.ts"
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_torchscript_file_fits_saves_and_reloads(tiles, torchscript_file, tmp_path):
    paths, labels = tiles
    detector = OSADDetector(
        "devnet", extractor=str(torchscript_file), extractor_options=OWN, n_pseudo=6, use_cache=False, **FAST
    ).fit(paths, labels)
    assert detector.fit_info_["feature_spec"]["channels"] == [16]
    scores = detector.decision_function(paths)
    detector.save(tmp_path / "model")
    torchscript_file.unlink()  # the saved model carries its own copy of the network
    loaded = OSADDetector.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.decision_function(paths), scores)
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert "extractor.ts" in saved["files"]  # checksummed like the weights


def test_damaged_torchscript_copy_is_named_and_a_later_save_drops_it(tiles, torchscript_file, tmp_path):
    paths, labels = tiles
    detector = OSADDetector(
        "devnet", extractor=str(torchscript_file), extractor_options=OWN, n_pseudo=6, use_cache=False, **FAST
    ).fit(paths, labels)
    model = detector.save(tmp_path / "model")
    network = model / "extractor.ts"
    network.write_bytes(network.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="extractor.ts"):
        OSADDetector.load(model)
    OSADDetector(
        "devnet", extractor="resnet18", extractor_options=TINY_RESNET, n_pseudo=6, use_cache=False, **FAST
    ).fit(paths, labels).save(model)
    assert not network.exists()  # nothing of the old model is left to be mistaken for the new one


def test_torchscript_network_can_be_finetuned_and_reloaded(tiles, torchscript_file, tmp_path):
    paths, labels = tiles
    before = {k: v.clone() for k, v in torch.jit.load(str(torchscript_file)).state_dict().items()}
    detector = OSADDetector(
        "dra",
        finetune_backbone=True,
        extractor=str(torchscript_file),
        extractor_options=OWN,
        n_pseudo=6,
        use_cache=False,
        finetune_options=FAST,
    ).fit(paths, labels)
    after = detector.extractor_.module.state_dict()
    assert not torch.equal(before["high.0.weight"], after["high.0.weight"])
    assert torch.equal(before["low.1.running_mean"], after["low.1.running_mean"])  # BatchNorm frozen
    scores = detector.decision_function(paths)
    detector.save(tmp_path / "model")
    np.testing.assert_array_equal(OSADDetector.load(tmp_path / "model").decision_function(paths), scores)


def test_cli_fits_and_scores_with_a_torchscript_network(tile_tree, torchscript_file, tmp_path):
    runner = CliRunner()
    model_dir = tmp_path / "model"
    result = runner.invoke(
        cli,
        [
            "fit",
            "--data",
            str(tile_tree),
            "--model",
            "dra",
            "--extractor",
            str(torchscript_file),
            "--extractor-layers",
            "high",
            "--extractor-option",
            "image_size=32",
            "--finetune-backbone",
            "--n-anomalies",
            "3",
            "--output",
            str(model_dir),
            "-o",
            "use_cache=false",
            *CLI_FINETUNE_FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "backbone fine-tuned" in result.output and (model_dir / "extractor.ts").is_file()
    scores_csv = tmp_path / "scores.csv"
    result = runner.invoke(
        cli, ["score", "--model", str(model_dir), "--data", str(tile_tree), "--output", str(scores_csv)]
    )
    assert result.exit_code == 0, result.output
    with scores_csv.open() as handle:
        assert len(list(csv.DictReader(handle))) == 14


def test_module_layers_are_read_by_hooks_and_unknown_ones_are_named():
    with seeded(0):
        module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1))
    extractor = ModuleExtractor(module, image_size=32, layers=["0", "2"])
    maps = extractor.extract(torch.rand(2, 3, 32, 32))
    assert [tuple(m.shape) for m in maps] == [(2, 4, 32, 32), (2, 6, 16, 16)]
    with pytest.raises(InvalidOptionsError, match="no submodule"):
        ModuleExtractor(module, layers=["head"])


def test_module_object_cannot_be_saved_and_says_how(tiles, tmp_path):
    paths, labels = tiles
    with seeded(0):
        module = TwoStage()
    detector = OSADDetector("devnet", extractor=module, extractor_options=OWN, n_pseudo=6, use_cache=False, **FAST)
    detector.fit(paths, labels)
    with pytest.raises(ModelFileError, match="torch.jit.script"):
        detector.save(tmp_path / "model")


def test_state_dict_for_a_registered_architecture(tiles, tmp_path):
    from torchvision.models import resnet18

    with seeded(7):
        state = resnet18().state_dict()
    weights = tmp_path / "mine.safetensors"
    save_file(state, str(weights))
    paths, labels = tiles
    detector = OSADDetector(
        "devnet",
        extractor="resnet18",
        extractor_options={**TINY_RESNET, "weights": str(weights)},
        n_pseudo=6,
        use_cache=False,
        **FAST,
    ).fit(paths, labels)
    expected = TorchvisionExtractor("resnet18", TorchvisionOptions(**TINY_RESNET))
    expected.model.load_state_dict({k: v for k, v in state.items() if k in expected.model.state_dict()})
    ours = extract_features(detector.extractor_, paths[:4]).scales[0]
    assert torch.allclose(ours, extract_features(expected, paths[:4]).scales[0])
    assert "weights=file:" in detector.extractor_.fingerprint()


def test_cli_reads_a_state_dict_and_names_the_layers(tile_tree, tmp_path):
    from torchvision.models import resnet18

    with seeded(7):
        save_file(resnet18().state_dict(), str(tmp_path / "mine.safetensors"))
    model_dir = tmp_path / "model"
    result = CliRunner().invoke(
        cli,
        [
            "fit",
            "--data",
            str(tile_tree),
            "--model",
            "devnet",
            "--extractor",
            "resnet18",
            "--extractor-weights",
            str(tmp_path / "mine.safetensors"),
            "--extractor-layers",
            "layer2,layer3",
            "--extractor-option",
            "image_size=32",
            "--extractor-option",
            "scales=1",
            "--n-anomalies",
            "3",
            "--output",
            str(model_dir),
            "-o",
            "use_cache=false",
            *CLI_FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((model_dir / "config.json").read_text())
    assert config["config"]["extractor_options"]["layers"] == ["layer2", "layer3"]
    assert config["fit"]["feature_spec"]["channels"] == [128, 256]


def test_finetuned_detector_weights_serve_as_a_state_dict(tiles, tmp_path):
    paths, labels = tiles
    tuned = OSADDetector(
        "devnet",
        finetune_backbone=True,
        extractor="resnet18",
        extractor_options=TINY_RESNET,
        n_pseudo=6,
        use_cache=False,
        finetune_options=FAST,
    ).fit(paths, labels)
    tuned.save(tmp_path / "tuned")
    reused = TorchvisionExtractor(
        "resnet18", TorchvisionOptions(**{**TINY_RESNET, "weights": str(tmp_path / "tuned" / "extractor.safetensors")})
    )
    a = extract_features(tuned.extractor_, paths[:4]).scales[0]
    assert torch.allclose(a, extract_features(reused, paths[:4]).scales[0])


def test_pickled_files_are_refused(tmp_path):
    with seeded(0):
        module = TwoStage()
    pickled = tmp_path / "whole.pt"
    torch.save(module, pickled)  # a whole pickled module: never unpickled on load
    with pytest.raises(AHLError, match="not a TorchScript archive"):
        ModuleExtractor.from_torchscript(pickled)
    with pytest.raises(DataError, match="pickled models are refused"):
        TorchvisionExtractor("resnet18", TorchvisionOptions(**{**TINY_RESNET, "weights": str(pickled)}))


def test_cli_rejects_weights_for_a_torchscript_network(tile_tree, torchscript_file, tmp_path):
    (tmp_path / "w.safetensors").write_bytes(b"")
    result = CliRunner().invoke(
        cli,
        [
            "fit",
            "--data",
            str(tile_tree),
            "--extractor",
            str(torchscript_file),
            "--extractor-weights",
            str(tmp_path / "w.safetensors"),
            "--output",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 2 and "carries its own weights" in result.output, (result.output, result.exception)
