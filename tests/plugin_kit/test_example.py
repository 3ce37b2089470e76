"""The example package ``examples/ahl-plugin-deepsad``: listed, passing the kit, fitted, compared.

CI installs it with ``pip install -e examples/ahl-plugin-deepsad``; where it
is not installed, the tests put a dist-info folder with its entry point on
``sys.path`` (no pip, no network), which is how ahl-plugins finds any plugin.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ahl_plugins.cli import cli
from ahl_plugins.plugins import PluginManager
from ahl_plugins.testing import check_all

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ahl-plugin-deepsad"


def installed() -> bool:
    try:
        dist = importlib.metadata.distribution("ahl-plugin-deepsad")
    except importlib.metadata.PackageNotFoundError:
        return False
    return any(ep.group == "ahl_plugins" and ep.name == "deepsad" for ep in dist.entry_points)


@pytest.fixture(scope="module")
def deepsad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Make the example discoverable through its entry point; yields how it was found."""
    if installed():
        yield "installed"
        return
    site = tmp_path_factory.mktemp("site")
    info = site / "ahl_plugin_deepsad-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ahl-plugin-deepsad\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[ahl_plugins]\ndeepsad = ahl_plugin_deepsad.plugin\n")
    paths = [str(site), str(EXAMPLE / "src")]
    sys.path[:0] = paths
    try:
        yield "dist-info on sys.path"
    finally:
        for path in paths:
            sys.path.remove(path)
        for module in [m for m in sys.modules if m.startswith("ahl_plugin_deepsad")]:
            del sys.modules[module]


@pytest.fixture
def global_manager(deepsad: str, fresh_global_manager) -> Iterator[None]:
    yield


def test_example_is_a_separate_package_registered_only_by_entry_point() -> None:
    pyproject = (EXAMPLE / "pyproject.toml").read_text()
    assert '[project.entry-points.ahl_plugins]\ndeepsad = "ahl_plugin_deepsad.plugin"' in pyproject
    from ahl_plugins.plugins import BUILTIN_PLUGINS

    assert not any("deepsad" in name for name in BUILTIN_PLUGINS)


def test_example_is_listed(global_manager: None) -> None:
    result = CliRunner().invoke(cli, ["plugins", "list"])
    assert result.exit_code == 0, result.output
    assert "deepsad 0.1.0 (ahl-plugin-deepsad)" in result.output
    for kind in ("scorers", "losses", "models"):
        assert f"  {kind}: deepsad" in result.output
    listed = json.loads(CliRunner().invoke(cli, ["plugins", "list", "--json"]).output)
    record = next(r for r in listed if r["name"] == "deepsad")
    assert record["error"] is None and record["components"] == {
        "losses": ["deepsad"],
        "models": ["deepsad"],
        "scorers": ["deepsad"],
    }


def test_example_passes_the_contract_kit(deepsad: str) -> None:
    manager = PluginManager(env={}).load()
    reports = check_all("deepsad", manager)
    assert {r.kind for r in reports} == {"scorers", "losses", "models"}
    model = next(r for r in reports if r.kind == "models")
    for requirement in (
        "scorer.functional-call [map]",
        "scorer.functional-call [vector]",
        "model.meta-gradient [map]",
        "loss.labels",
    ):
        assert requirement in model.passed


def test_example_check_command(global_manager: None) -> None:
    result = CliRunner().invoke(cli, ["plugins", "check", "deepsad", "--kind", "loss"])
    assert result.exit_code == 0, result.output
    assert "loss 'deepsad' (plugin deepsad): ok" in result.output and "1 passed, 0 failed" in result.output


def blobs(seed: int, n_normal: int, n_anomalous: int, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n_normal, dim)), rng.normal(size=(n_anomalous, dim)) + 3.0]).astype(np.float32)
    return X, np.r_[np.zeros(n_normal), np.ones(n_anomalous)].astype(np.int64)


@pytest.mark.slow
def test_example_fits_with_and_without_ahl(global_manager: None, tmp_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    from ahl_plugins import OSADDetector

    X, y = blobs(0, 120, 6)
    X_test, y_test = blobs(1, 60, 20)
    quick = {"epochs": 2, "batches_per_epoch": 4, "progress": False, "use_cache": False}
    ahl_quick = {"outer_steps_per_epoch": 1, "inner_steps": 1}
    for ahl in (False, True):
        detector = OSADDetector(model="deepsad", ahl=ahl, eta=2.0, **quick, **(ahl_quick if ahl else {})).fit(X, y)
        scores = detector.decision_function(X_test)
        assert scores.shape == (80,) and np.isfinite(scores).all()
        # the blobs are far apart: a working Deep SAD ranks anomalies first
        assert roc_auc_score(y_test, scores) > 0.8, f"ahl={ahl}"
        saved = detector.save(tmp_path / f"ahl-{ahl}")
        np.testing.assert_allclose(OSADDetector.load(saved).decision_function(X_test), scores, rtol=1e-5)


@pytest.mark.slow
def test_example_is_compared_with_and_without_ahl(global_manager: None, tmp_path: Path) -> None:
    X, y = blobs(2, 90, 16)
    types = np.r_[["normal"] * 90, ["up"] * 16]
    data = tmp_path / "blobs.npz"
    np.savez(data, X=X, y=y, types=types)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            "--data",
            str(data),
            "--models",
            "deepsad",
            "--n-anomalies",
            "3",
            "--seeds",
            "1",
            "--output",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--quiet",
            "--no-plots",
            "--option",
            "epochs=2",
            "--option",
            "batches_per_epoch=2",
            "--option",
            "n_pseudo=16",
            "--ahl-option",
            "outer_steps_per_epoch=1",
            "--ahl-option",
            "inner_steps=1",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["model"], r["variant"]) for r in rows} == {("knn", "knn"), ("deepsad", "base"), ("deepsad", "ahl")}
    assert all(r["status"] == "ok" for r in rows), [r.get("reason") for r in rows]
    assert "AHL(deepsad)" in result.output
