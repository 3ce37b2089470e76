"""Bad input to OSADDetector and damaged saved models: each gets a specific error, never a wrong result."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from ahl_plugins import FeatureSpec, ModelSpec, hookimpl
from ahl_plugins.cli import cli
from ahl_plugins.detector import OSADDetector
from ahl_plugins.errors import DataError, InvalidComponentError, InvalidOptionsError, ModelFileError
from ahl_plugins.plugins import get_manager

FAST = {"epochs": 2, "batches_per_epoch": 3, "n_pseudo": 16, "use_cache": False}


# -- labels -------------------------------------------------------------------------------------


def test_fractional_labels_are_refused_not_cast_to_zero(blobs):
    X, y, _, _ = blobs
    y = y.astype(float)
    y[y == 1] = 0.7
    with pytest.raises(DataError, match=r"non-integer values \(0.7.*at positions \[90, 91"):
        OSADDetector("devnet", **FAST).fit(X, y)


def test_nan_labels_are_named_as_nan(blobs):
    X, y, _, _ = blobs
    y = y.astype(float)
    y[5] = np.nan
    with pytest.raises(DataError, match=r"NaN or infinite values at positions \[5\]") as info:
        OSADDetector("devnet", **FAST).fit(X, y)
    assert "-9223372036854775808" not in str(info.value)


def test_whole_float_and_boolean_labels_still_work(blobs):
    X, y, _, _ = blobs
    OSADDetector("devnet", **FAST).fit(X, y.astype(float))
    OSADDetector("devnet", **FAST).fit(X, y.astype(bool))


# -- options of the other trainer ---------------------------------------------------------------


def test_an_ahl_option_without_ahl_says_it_needs_ahl():
    with pytest.raises(InvalidOptionsError, match=r"'n_clusters' is an AHL option; it needs ahl=True \(.*--ahl\)"):
        OSADDetector("devnet", n_clusters=2)


def test_a_base_loop_option_with_ahl_names_the_ahl_options():
    with pytest.raises(InvalidOptionsError, match=r"'lr' belongs to the base training loop.*outer_lr"):
        OSADDetector("devnet", ahl=True, lr=0.1)


# -- head shapes --------------------------------------------------------------------------------


class TrailingDimScorer(nn.Module):
    """A linear score that forgets to squeeze: heads of shape (B, 1)."""

    head_names = ("score",)

    def __init__(self, spec: FeatureSpec, options: Any = None) -> None:
        super().__init__()
        self.linear = nn.Linear(spec.channels[0], 1)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"score": self.linear(features[0])}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return heads["score"]

    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        """Nothing to prepare."""


def broadcasting_loss(heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    return ((heads["score"] - labels.float()) ** 2).mean()  # (B, 1) - (B,) broadcasts to (B, B) without a word


class TrailingDimPlugin:
    @staticmethod
    @hookimpl
    def ahl_register_scorers(register):
        register("trailing_dim", TrailingDimScorer)

    @staticmethod
    @hookimpl
    def ahl_register_losses(register):
        register("broadcasting", lambda options=None: broadcasting_loss)

    @staticmethod
    @hookimpl
    def ahl_register_models(register):
        register("trailing_dim", ModelSpec(scorer="trailing_dim", loss="broadcasting"))


@pytest.fixture
def trailing_dim_model(fresh_manager):
    get_manager().register_plugin(TrailingDimPlugin(), "trailing-dim")
    return "trailing_dim"


@pytest.mark.parametrize("ahl", [False, True], ids=["base", "ahl"])
def test_fit_refuses_heads_of_the_wrong_shape(trailing_dim_model, blobs, ahl):
    X, y, _, _ = blobs
    with pytest.raises(
        InvalidComponentError, match=r"head 'score' is a tensor of shape \(8, 1\).*expected shape \(8,\) \(squeeze"
    ):
        OSADDetector(trailing_dim_model, ahl=ahl, **FAST).fit(X, y)


def test_compare_reports_the_wrong_shape_as_a_failed_cell(trailing_dim_model, blobs, tmp_path):
    X, y, X_test, y_test = blobs
    np.savez(tmp_path / "blobs.npz", X=np.concatenate([X, X_test]), y=np.r_[y, y_test])
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--data",
            str(tmp_path / "blobs.npz"),
            "--models",
            trailing_dim_model,
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--n-anomalies",
            "3",
            "--no-plots",
            "-q",
            "--output",
            str(tmp_path / "out"),
            "-o",
            "batches_per_epoch=2",
            "-o",
            "n_pseudo=8",
            "-o",
            "use_cache=false",
        ],
    )
    assert result.exit_code == 1, result.output
    rows = [r for r in csv.DictReader((tmp_path / "out" / "results.csv").open()) if r["model"] == trailing_dim_model]
    assert {r["variant"] for r in rows} == {"base", "ahl"}
    assert all(r["status"] == "failed" and "expected shape (8,)" in r["reason"] for r in rows)


def test_score_with_a_model_trained_by_a_wrong_shape_scorer_is_a_clear_error(
    trailing_dim_model, blobs, tmp_path, monkeypatch
):
    X, y, X_test, _ = blobs
    with monkeypatch.context() as patch:  # a model trained before the host checked head shapes
        patch.setattr("ahl_plugins.training.base.probe_heads", lambda *args: None)
        patch.setattr("ahl_plugins.training.scoring.check_heads", lambda *args: None)
        OSADDetector(trailing_dim_model, **FAST).fit(X, y).save(tmp_path / "model")
    np.savez(tmp_path / "test.npz", X=X_test, y=np.zeros(len(X_test), int))
    result = CliRunner().invoke(
        cli,
        [
            "score",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(tmp_path / "test.npz"),
            "--output",
            str(tmp_path / "scores.csv"),
        ],
    )
    assert result.exit_code == 1
    assert "head 'score' is a tensor of shape" in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, TypeError)


# -- damaged saved models -----------------------------------------------------------------------


@pytest.fixture
def saved(blobs, tmp_path):
    X, y, X_test, _ = blobs
    detector = OSADDetector("devnet", **FAST).fit(X, y)
    return detector.save(tmp_path / "model"), detector.decision_function(X_test), X_test


def _flip_a_bit(path, position: int) -> None:
    payload = bytearray(path.read_bytes())
    payload[position] ^= 0x01
    path.write_bytes(bytes(payload))


@pytest.mark.parametrize("name", ["scorer.safetensors", "extractor.safetensors"])
def test_a_flipped_bit_in_a_weights_file_names_the_damaged_file(saved, name):
    path, _, _ = saved
    _flip_a_bit(path / name, len((path / name).read_bytes()) - 3)  # inside the tensor data: still parses
    with pytest.raises(ModelFileError, match=rf"{name} is damaged: its SHA-256 checksum differs"):
        OSADDetector.load(path)


def test_a_garbled_key_in_a_weights_file_is_reported_as_damage(saved):
    path, _, _ = saved
    payload = (path / "scorer.safetensors").read_bytes()
    key = next(iter(json.loads(payload[8 : 8 + int.from_bytes(payload[:8], "little")]))).encode()
    (path / "scorer.safetensors").write_bytes(payload.replace(key, key[:-1] + b"X", 1))
    with pytest.raises(ModelFileError, match="scorer.safetensors is damaged") as info:
        OSADDetector.load(path)
    assert "does not match model" not in str(info.value)


def test_an_intact_model_loads_and_scores_the_same(saved):
    path, scores, X_test = saved
    assert np.allclose(OSADDetector.load(path).decision_function(X_test), scores)
    assert set(json.loads((path / "config.json").read_text())["files"]) == {
        "scorer.safetensors",
        "extractor.safetensors",
        "history.json",
        "profile.json",
    }


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda d: d.pop("fit"), r"fit: Field required"),
        (lambda d: d.pop("threshold"), r"threshold: Field required"),
        (lambda d: d["fit"].pop("input_kind"), r"fit.input_kind: Field required"),
        (lambda d: d["fit"]["feature_spec"].update(kind="cube"), r"fit.feature_spec.kind"),
        (lambda d: d["config"].update(epochs=3), r"config.epochs: Extra inputs"),
        (lambda d: d.update(files={"../x": "0" * 64}), r"files: Value error, file name '../x'"),
        (lambda d: d.update(threshold="high"), r"threshold: Input should be a valid number"),
    ],
    ids=[
        "no-fit",
        "no-threshold",
        "no-input-kind",
        "bad-feature-kind",
        "extra-config-key",
        "path-in-files",
        "bad-threshold",
    ],
)
def test_config_json_is_validated_in_full(saved, edit, pattern):
    path, _, _ = saved
    document = json.loads((path / "config.json").read_text())
    edit(document)
    (path / "config.json").write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match=r"config.json is not a valid saved model .*" + pattern):
        OSADDetector.load(path)


def test_an_edited_or_corrupted_config_json_is_reported_as_damaged(saved):
    path, _, _ = saved
    document = json.loads((path / "config.json").read_text())
    threshold = document["threshold"]
    document["threshold"] = threshold + 1.0  # still valid against the schema, but not what was saved
    (path / "config.json").write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match=r"config.json is damaged: its content differs from the SHA-256 checksum"):
        OSADDetector.load(path)
    document["threshold"] = threshold
    (path / "config.json").write_text(json.dumps(document, indent=4))  # reformatting alone is no damage
    OSADDetector.load(path)


def test_config_json_that_is_not_an_object_is_refused(saved):
    path, _, _ = saved
    (path / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelFileError, match="holds a JSON list"):
        OSADDetector.load(path)
