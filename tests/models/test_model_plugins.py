from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ahl_plugins.contracts import FeatureSpec, ModelSpec, Scorer
from ahl_plugins.errors import InvalidOptionsError
from ahl_plugins.plugins import PluginManager

MODULES = ("builtin_plugins.losses", "builtin_plugins.devnet", "builtin_plugins.dra")


@pytest.fixture(scope="module")
def manager():
    return PluginManager(builtins=MODULES, entry_point_group=None).load()


def test_components_are_registered(manager):
    assert manager.registry("scorers").names() == ["devnet", "dra"]
    assert manager.registry("losses").names() == ["deviation", "dra"]
    assert manager.registry("models").names() == ["devnet", "dra"]
    assert not manager.failures()


@pytest.mark.parametrize("name, loss", [("devnet", "deviation"), ("dra", "dra")])
def test_model_bundles_resolve_and_build(manager, name, loss):
    spec = manager.model(name)
    assert isinstance(spec, ModelSpec)
    assert (spec.scorer, spec.loss, spec.image_extractor, spec.vector_extractor) == (name, loss, "resnet18", "identity")
    scorer_entry, loss_entry = manager.get("scorers", spec.scorer), manager.get("losses", spec.loss)
    scorer = scorer_entry.factory(FeatureSpec("vector", (3,)), scorer_entry.parse_options(spec.scorer_options))
    loss_fn = loss_entry.factory(loss_entry.parse_options(spec.loss_options))
    assert isinstance(scorer, torch.nn.Module) and isinstance(scorer, Scorer)
    scorer.prepare([torch.randn(6, 3)], torch.Generator().manual_seed(0))
    heads = scorer([torch.randn(4, 3)])
    assert tuple(heads) == scorer.head_names
    value = loss_fn(heads, torch.tensor([0, 1, 2, 0]))
    assert value.dim() == 0 and torch.isfinite(value)


@pytest.mark.parametrize(
    "kind, name, bad",
    [
        ("scorers", "devnet", {"topk": 0.2}),
        ("scorers", "dra", {"topk_ratio": 2.0}),
        ("losses", "dra", {"margin": "wide"}),
    ],
)
def test_bad_options_are_rejected_with_the_valid_names(manager, kind, name, bad):
    with pytest.raises(InvalidOptionsError, match="valid options"):
        manager.get(kind, name).parse_options(bad)


def test_plugin_modules_do_not_import_torch():
    code = "import sys; import " + ", ".join(MODULES) + "; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
