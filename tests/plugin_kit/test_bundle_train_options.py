"""A model bundle's train_options are validated like every other option model, at registration."""

from __future__ import annotations

import pytest
from plugin_kit_components import bare_manager, good_plugin

from ahl_plugins import ModelSpec
from ahl_plugins.errors import PluginLoadWarning


def _register(**train_options):
    manager = bare_manager()
    bundle = ModelSpec(scorer="tiny", loss="logistic", vector_extractor="vector_identity", train_options=train_options)
    manager.register_plugin(good_plugin(ahl_register_models=[("bundle", bundle)]), "good")
    return manager


def test_a_misspelt_train_option_fails_the_plugin_with_the_valid_keys():
    with pytest.warns(PluginLoadWarning):
        manager = _register(epoch=3)
    error = manager.records["good"].error
    assert "train_options has unknown key(s) ['epoch']" in error and "epochs" in error and "outer_lr" in error


def test_a_train_option_of_the_wrong_type_fails_the_plugin():
    with pytest.warns(PluginLoadWarning):
        manager = _register(epochs="many")
    assert "train_options are invalid for the base loop" in manager.records["good"].error


def test_options_of_either_trainer_are_accepted():
    manager = _register(epochs=2, lr=1e-3, n_clusters=2)
    assert manager.records["good"].error is None and "bundle" in manager.registry("models")


def test_a_base_loop_only_option_warns_when_ahl_trains_the_bundle(fresh_manager):
    from ahl_plugins.detector import OSADDetector
    from ahl_plugins.plugins import get_manager

    bundle = ModelSpec(scorer="tiny", loss="logistic", vector_extractor="vector_identity", train_options={"lr": 1e-3})
    get_manager().register_plugin(good_plugin(ahl_register_models=[("bundle", bundle)]), "good")
    with pytest.warns(UserWarning, match=r"sets train_options \['lr'\] for the base loop only.*outer_lr"):
        OSADDetector("bundle", ahl=True)
    assert OSADDetector("bundle").resolved.trainer.lr == 1e-3
