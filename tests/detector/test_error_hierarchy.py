"""Meta-test: every exception the library raises on bad input is an ``AHLError`` subclass defined in
``ahl_plugins.errors``, so callers catch one class and the command line prints one line, never a traceback."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import ahl_plugins.errors as errors
from ahl_plugins import OSADDetector
from ahl_plugins.errors import AHLError

X = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
Y = np.r_[np.zeros(27), np.ones(3)].astype(int)
FAST = {"epochs": 1, "batches_per_epoch": 1, "n_pseudo": 4, "use_cache": False}


def _fitted() -> OSADDetector:
    return OSADDetector("devnet", **FAST).fit(X, Y)


BAD_INPUTS = {
    "unknown model": lambda: OSADDetector("no-such-model"),
    "unknown option": lambda: OSADDetector("devnet", epoch=3),
    "invalid option value": lambda: OSADDetector("devnet", epochs=0),
    "unknown preset": lambda: OSADDetector("devnet", preset="papers"),
    "bad contamination": lambda: OSADDetector("devnet", contamination=0.9),
    "AHL option without AHL": lambda: OSADDetector("devnet", n_clusters=3),
    "unknown extractor": lambda: OSADDetector("devnet", extractor="no-such-extractor"),
    "unknown pseudo-anomaly generator": lambda: OSADDetector("devnet", pseudo_anomalies=["nope"]),
    "labels of the wrong length": lambda: OSADDetector("devnet", **FAST).fit(X, Y[:-1]),
    "labels other than 0/1": lambda: OSADDetector("devnet", **FAST).fit(X, Y * 2),
    "no labels": lambda: OSADDetector("devnet", **FAST).fit(X),
    "3-D array": lambda: OSADDetector("devnet", **FAST).fit(X[:, :, None], Y),
    "a single path": lambda: OSADDetector("devnet", **FAST).fit("images/", Y),
    "NaN features": lambda: OSADDetector("devnet", **FAST).fit(np.where(X > 2, np.nan, X), Y),
    "score before fit": lambda: OSADDetector("devnet").decision_function(X),
    "score with the wrong width": lambda: _fitted().decision_function(X[:, :3]),
    "maps of vectors": lambda: _fitted().anomaly_maps(X),
    "raw table without an encoder": lambda: _fitted().decision_function({"a": [1.0], "b": [2.0]}),
    "load a missing directory": lambda: OSADDetector.load("/no/such/model"),
    "unknown component kind": lambda: (
        __import__("ahl_plugins.plugins", fromlist=["get_manager"]).get_manager().registry("nope")
    ),
    "load a missing data set": lambda: __import__("ahl_plugins.data.load", fromlist=["load_dataset"]).load_dataset(
        "/no/such/data"
    ),
    "train_ahl without an estimator": lambda: _train_ahl_without_estimator(),
}


def _train_ahl_without_estimator() -> None:
    from ahl_plugins.ahl import AHLOptions, train_ahl
    from ahl_plugins.features.store import Features
    from ahl_plugins.training.data import TrainingData

    data = TrainingData(Features((torch.from_numpy(X[:27]),)), Features((torch.from_numpy(X[27:]),)), {}, ("a",) * 3)
    parts = OSADDetector("devnet").components
    train_ahl(parts.scorer(data.normals.spec), parts.loss(), data, AHLOptions(epochs=1, n_clusters=2), seed=0)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_the_librarys_own_error(case):
    with pytest.raises(Exception) as caught:
        BAD_INPUTS[case]()
    assert isinstance(caught.value, AHLError), f"{case}: raised {type(caught.value).__name__}: {caught.value}"
    assert str(caught.value).strip(), f"{case}: the message is empty"


def test_every_error_and_warning_class_lives_in_errors_py():
    import ahl_plugins

    defined = {
        name for name, obj in vars(errors).items() if inspect.isclass(obj) and issubclass(obj, Warning | Exception)
    }
    from pathlib import Path

    root = Path(ahl_plugins.__file__).parent
    elsewhere = []
    for path in root.rglob("*.py"):
        if path.name == "errors.py" or "testing" in path.parts:
            continue  # the plugin test kit's ContractError is an assertion for plugin authors' tests
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("class ") and ("Error(" in stripped or "Warning(" in stripped):
                elsewhere.append(f"{path.relative_to(root)}: {stripped}")
    assert not elsewhere, f"error classes outside errors.py: {elsewhere}"
    assert {"AHLError", "TrainingDivergedError", "TemplateError", "PluginLoadWarning", "SmallClusterWarning"} <= defined
