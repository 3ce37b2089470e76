"""A plugin author's type checker sees the contracts: mypy accepts a correct plugin and names the faults of a wrong one.

mypy reads the installed package the way it reads any third-party one: from a ``PYTHONPATH`` entry, which it
treats like site-packages, so the package's ``py.typed`` marker is what makes it look inside at all (without
it the correct plugin fails too, with ``import-untyped``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import ahl_plugins

mypy_api = pytest.importorskip("mypy.api", reason="mypy is not installed; pip install -e '.[test]' brings it")

PACKAGE_ROOT = Path(ahl_plugins.__file__).resolve().parents[1]

HEADER = """
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ahl_plugins.contracts import FeatureSpec, Loss, Register, Scorer
from ahl_plugins.hookspecs import hookimpl
"""

GOOD_PLUGIN = (
    HEADER
    + '''

class MeanScorer(nn.Module):
    """One head: a learnt weighting of the first scale's channel means."""

    head_names: tuple[str, ...] = ("score",)

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(spec.channels[0]))

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        pooled = features[0].flatten(2).mean(2) if features[0].dim() == 4 else features[0]
        return {"score": pooled @ self.weight}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return heads["score"]

    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        return None


def margin_loss(heads: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    score = heads["score"]
    return torch.where(labels == 0, score.abs(), torch.relu(5.0 - score)).mean()


def build_scorer(spec: FeatureSpec, options: None) -> Scorer:
    return MeanScorer(spec)


loss: Loss = margin_loss


@hookimpl
def ahl_register_scorers(register: Register) -> None:
    register("mean", build_scorer, description="channel means, weighted")
'''
)

WRONG_PLUGIN = (
    HEADER
    + '''

class FloatScorer(nn.Module):
    """combine returns a Python float, not a tensor of scores."""

    head_names: tuple[str, ...] = ("score",)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"score": features[0].mean(1)}

    def combine(self, heads: Mapping[str, torch.Tensor]) -> float:
        return float(heads["score"].sum())

    def prepare(self, normal_features: Sequence[torch.Tensor], generator: torch.Generator) -> None:
        return None


def build_scorer(spec: FeatureSpec, options: None) -> Scorer:
    return FloatScorer()


def labels_first_loss(labels: torch.Tensor, heads: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return heads["score"].mean()


loss: Loss = labels_first_loss


@hookimpl
def ahl_register_scorers(register: Register) -> None:
    register("float")
'''
)


def _mypy(module: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    """mypy (strict) on ``module`` as a plugin author runs it: the package importable, nothing of this repo's config."""
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    monkeypatch.chdir(tmp_path)  # no pyproject.toml or package sources in the working directory
    monkeypatch.setenv("PYTHONPATH", str(PACKAGE_ROOT))
    monkeypatch.delenv("MYPYPATH", raising=False)
    stdout, stderr, status = mypy_api.run(
        ["--strict", "--config-file", str(config), "--cache-dir", str(tmp_path / "mypy_cache"), str(module)]
    )
    return stdout + stderr, status


def test_py_typed_ships_with_both_packages() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    root = Path(__file__).resolve().parents[2]
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package in ("ahl_plugins", "builtin_plugins"):
        assert (root / package / "py.typed").is_file(), package
        assert "py.typed" in package_data[package], package


@pytest.mark.slow  # mypy reads torch's stubs: about 30 s cold
def test_a_plugin_authors_mypy_checks_against_the_contracts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = tmp_path / "good_plugin.py"
    good.write_text(GOOD_PLUGIN)
    output, status = _mypy(good, tmp_path, monkeypatch)
    assert status == 0, output
    assert "Success: no issues found in 1 source file" in output

    wrong = tmp_path / "wrong_plugin.py"
    wrong.write_text(WRONG_PLUGIN)
    output, status = _mypy(wrong, tmp_path, monkeypatch)
    assert status == 1, output
    errors = [line for line in output.splitlines() if ": error:" in line]
    # the scorer's combine returns a float: FloatScorer is no Scorer
    assert any('"FloatScorer", expected "Scorer"' in e and "[return-value]" in e for e in errors), output
    assert "def combine(self, heads: Mapping[str, Tensor]) -> float" in output, output
    # the loss takes its arguments the wrong way round
    swapped = '"Callable[[Tensor, Mapping[str, Tensor]], Tensor]", variable has type "Callable[[Mapping[str, Tensor], Tensor], Tensor]"'
    assert any(swapped in e and "[assignment]" in e for e in errors), output
    # register needs the factory
    assert any('Too few arguments for "__call__" of "Register"' in e for e in errors), output
    assert len(errors) == 3, output
