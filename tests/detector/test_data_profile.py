"""The data profile saved with a model: a new batch is read with the model's settings, not its own.

The issue's case: folder A holds 16-bit normals 500..3,999 (read as 12-bit); folder B holds the same images
plus one defect patch at 9,000, which on its own would make B read as 14-bit (every normal four times darker).
"""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from detector_testkit import FAST
from PIL import Image

from ahl_plugins.cli import cli
from ahl_plugins.data.folder import load_folder
from ahl_plugins.data.images import load_image_tensor
from ahl_plugins.data.read_settings import ReadSettings
from ahl_plugins.detector import OSADDetector
from ahl_plugins.errors import DataDriftWarning, LowBitDepthWarning

SMALL = {"extractor": "resnet18", "extractor_options": {"weights": "none", "image_size": 64}}
SMALL_CLI = ["--extractor-option", "weights=none", "--extractor-option", "image_size=64"]
FAST_CLI = ["-o", "epochs=2", "-o", "batches_per_epoch=3", "-o", "n_pseudo=16"]


def camera_image(rng: np.random.Generator, patch: int | None = None) -> np.ndarray:
    """A 12-bit camera's frame in a 16-bit container: values 500..3,999; ``patch``: a defect at that value."""
    values = rng.integers(1500, 3000, size=(48, 48))
    values[0, 0], values[-1, -1] = 500, 3999
    if patch is not None:
        top, left = rng.integers(4, 30, size=2)
        values[top : top + 12, left : left + 12] = patch
    return values.astype(np.uint16)


@pytest.fixture
def folders(tmp_path):
    """``(A, B)``: B = A's images plus ``test/dent/bright.png`` with a patch at 9,000."""
    rng = np.random.default_rng(3)
    a = tmp_path / "A"
    for part, n, patch in (("train/good", 20, None), ("test/good", 12, None), ("test/dent", 6, 3999)):
        (a / part).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(camera_image(rng, patch)).save(a / part / f"{i:03d}.png")
    b = tmp_path / "B"
    shutil.copytree(a, b)
    Image.fromarray(camera_image(rng, 9000)).save(b / "test" / "dent" / "bright.png")
    return a, b


def load(root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowBitDepthWarning)  # A's values use under 1/8 of 16 bits; said elsewhere
        return load_folder(root)


def fit_on(dataset) -> OSADDetector:
    rows = np.flatnonzero((dataset.partition == "train") | (dataset.types == "dent"))[:24]
    return OSADDetector("devnet", seed=0, **SMALL, **FAST).fit(dataset.subset(rows))


def test_a_batch_is_read_with_the_models_bit_depth_whatever_its_own_maximum(folders):
    a, b = load(folders[0]), load(folders[1])
    assert (a.read.bit_depth, b.read.bit_depth) == (12, 14)  # what each folder picks on its own
    normal = a.inputs[a.ids.index("test/good/000.png")]
    assert float(load_image_tensor(normal, 48, a.read).mean()) == pytest.approx(0.55, abs=0.02)
    assert float(load_image_tensor(normal, 48, b.read).mean()) == pytest.approx(0.137, abs=0.01)  # 4x darker

    detector = fit_on(a)
    assert detector.read_settings_ == ReadSettings(bit_depth=12)
    test_a = a.subset(np.flatnonzero(a.partition == "test"))
    test_b = b.subset(np.flatnonzero(b.partition == "test"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataDriftWarning)
        in_a = dict(zip(test_a.ids, detector.decision_function(test_a), strict=True))
    with pytest.warns(DataDriftWarning) as caught:
        in_b = dict(zip(test_b.ids, detector.decision_function(test_b), strict=True))
    assert len(caught) == 1  # once per batch, one line per cause
    message = str(caught[0].message)
    assert "raw value range: this batch's values span 500..9000, outside the training images' range 500..3999" in (
        message
    )
    assert "would pick 14-bit reading, the training images' picked 12-bit; read at the model's 12-bit" in message
    np.testing.assert_array_equal([in_b[i] for i in test_a.ids], [in_a[i] for i in test_a.ids])


def test_a_model_saved_before_profiles_loads_and_reads_by_the_batchs_own_settings(folders, tmp_path):
    a, b = load(folders[0]), load(folders[1])
    detector = fit_on(a)
    with_profile = tmp_path / "new"
    detector.save(with_profile)
    detector.profile_ = None  # what a save before profiles wrote: no profile.json, nothing about it in config.json
    old = tmp_path / "old"
    detector.save(old)
    assert not (old / "profile.json").exists() and "profile.json" not in (old / "config.json").read_text()

    loaded = OSADDetector.load(old)
    assert loaded.profile_ is None and loaded.read_settings_ is None
    test_a = a.subset(np.flatnonzero(a.partition == "test"))
    test_b = b.subset(np.flatnonzero(b.partition == "test"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataDriftWarning)  # no profile: nothing to compare with
        old_a, old_b = loaded.decision_function(test_a), loaded.decision_function(test_b)
    new_a = OSADDetector.load(with_profile).decision_function(test_a)
    np.testing.assert_allclose(old_a, new_a, rtol=1e-6)  # A read by A's own settings: the same as the profile's
    moved = np.abs(old_b[: len(old_a)] - old_a) / np.abs(old_a)
    assert moved.max() > 0.01  # B read at its own 14 bits: what every model did before profiles
    assert loaded.drift_report(test_b, old_b).to_dict() == {"drift": False, "causes": [], "profile": None}


FIXTURES = Path(__file__).parent / "fixtures"


def test_a_model_saved_by_the_code_before_profiles_loads_and_scores_as_it_did(tmp_path):
    """``fixtures/model_before_profiles``: saved by the code before this change (see make_model_before_profiles.py)."""
    rng = np.random.default_rng(3)
    for part, n, patch in (("train/good", 20, None), ("test/good", 12, None), ("test/dent", 6, 3999)):
        (tmp_path / "A" / part).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(camera_image(rng, patch)).save(tmp_path / "A" / part / f"{i:03d}.png")
    dataset = load(tmp_path / "A")
    detector = OSADDetector.load(FIXTURES / "model_before_profiles")
    assert detector.profile_ is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataDriftWarning)
        scores = detector.decision_function(dataset.subset(np.flatnonzero(dataset.partition == "test")))
    expected = json.loads((FIXTURES / "model_before_profiles_scores.json").read_text())
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_a_profile_file_not_listed_in_config_is_ignored(folders, tmp_path):
    detector = fit_on(load(folders[0]))
    detector.save(tmp_path / "with")
    profile = detector.profile_
    detector.profile_ = None
    detector.save(tmp_path / "old")
    shutil.copy(tmp_path / "with" / "profile.json", tmp_path / "old" / "profile.json")  # not checksummed: not used
    assert OSADDetector.load(tmp_path / "old").profile_ is None
    assert OSADDetector.load(tmp_path / "with").profile_ == profile


def read_scores(path):
    with open(path, newline="") as handle:
        return {row["id"]: float(row["score"]) for row in csv.DictReader(handle)}


def test_fit_on_a_then_score_a_and_b_through_the_cli(folders, tmp_path):
    a, b = folders
    runner = CliRunner()
    model = tmp_path / "model"
    fit = ["fit", "--data", str(a), "--n-anomalies", "3", "--output", str(model), "--cache-dir", str(tmp_path / "c")]
    result = runner.invoke(cli, [*fit, *SMALL_CLI, *FAST_CLI])
    assert result.exit_code == 0, result.output
    assert json.loads((model / "profile.json").read_text())["read"]["bit_depth"] == 12
    outputs = {}
    for name, data in (("A", a), ("B", b)):
        output = tmp_path / f"{name}.csv"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = runner.invoke(
                cli, ["score", "--model-dir", str(model), "--data", str(data), "--output", str(output)]
            )
        assert result.exit_code == 0, result.output
        outputs[name] = (read_scores(output), json.loads((tmp_path / f"{name}.profile.json").read_text()), caught)
    scores_a, profile_a, _ = outputs["A"]
    scores_b, profile_b, caught_b = outputs["B"]
    assert {k: scores_b[k] for k in scores_a} == scores_a  # the same images score the same in either folder
    assert profile_a["model_read_settings"]["bit_depth"] == 12
    assert not any("raw value range" in c for c in profile_a["causes"])
    assert any("outside the training images' range 500..3999" in c for c in profile_b["causes"])
    drift = [w for w in caught_b if issubclass(w.category, DataDriftWarning)]
    assert len(drift) == 1 and "500..9000" in str(drift[0].message)
    assert profile_b["images"]["batch"]["own_bit_depth"] == 14


def test_an_interrupted_score_resumes_and_writes_what_an_uninterrupted_one_does(folders, tmp_path, monkeypatch):
    a, _ = folders
    runner = CliRunner()
    model = tmp_path / "model"
    fit = ["fit", "--data", str(a), "--n-anomalies", "3", "--output", str(model), "--cache-dir", str(tmp_path / "c")]
    assert runner.invoke(cli, [*fit, *SMALL_CLI, *FAST_CLI]).exit_code == 0
    score = ["score", "--model-dir", str(model), "--data", str(a), "--chunk-size", "4", "--no-cache"]
    whole = tmp_path / "whole.csv"
    assert runner.invoke(cli, [*score, "--output", str(whole), "--maps", str(tmp_path / "m1")]).exit_code == 0

    calls = {"n": 0}
    real = OSADDetector.scores_of

    def interrupted(self, features):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third chunk
        return real(self, features)

    monkeypatch.setattr(OSADDetector, "scores_of", interrupted)
    partial = tmp_path / "partial.csv"
    result = runner.invoke(cli, [*score, "--output", str(partial), "--maps", str(tmp_path / "m2")])
    assert result.exit_code != 0
    assert len(read_scores(partial)) == 8 and (tmp_path / "partial.csv.progress.json").is_file()
    with partial.open("a") as handle:
        handle.write("test/good/0")  # a row cut short by the interruption
    monkeypatch.setattr(OSADDetector, "scores_of", real)
    calls["n"] = 0
    result = runner.invoke(cli, [*score, "--output", str(partial), "--maps", str(tmp_path / "m2")])
    assert result.exit_code == 0, result.output
    assert "(8 kept from an interrupted run)" in result.output
    assert partial.read_text().splitlines()[0] == "id,score,label,type"
    assert read_scores(partial) == read_scores(whole) and len(read_scores(whole)) == 18
    assert not (tmp_path / "partial.csv.progress.json").exists()
    assert sorted(p.name for p in (tmp_path / "m2").glob("*.npy")) == sorted(
        p.name for p in (tmp_path / "m1").glob("*.npy")
    )
    assert (tmp_path / "m2" / "index.html").is_file()
    # a finished CSV is replaced, never extended
    result = runner.invoke(cli, [*score, "--output", str(partial)])
    assert result.exit_code == 0 and "kept from" not in result.output and len(read_scores(partial)) == 18
