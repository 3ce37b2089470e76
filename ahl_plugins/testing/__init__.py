"""The contract kit: does a registered component do what the host relies on?

Plugin authors run it in their own test suites::

    import pytest
    from ahl_plugins.testing import check_component, components_of

    @pytest.mark.parametrize(("kind", "name"), components_of("my_plugin"))
    def test_contract(kind, name):
        check_component(kind, name)

and from the command line (``ahl plugins check NAME``). Every check builds
the component from the registry, feeds it small synthetic inputs, and raises
:class:`ContractError` (an ``AssertionError``, so pytest shows it as a plain
failure) naming the requirement that broke, what was observed, and how to fix
it. The requirement ids and their one-line statements are in
:data:`REQUIREMENTS`; ``docs/plugins.md`` lists them for plugin authors.

Why these checks: the AHL learner adapts copies of a scorer's parameters with
``torch.func.functional_call`` and differentiates through that adaptation, the
base trainer and AHL both call the loss as ``loss(heads, labels)`` with labels
0/1/2 and batches in which a label group may be missing, and features are
cached by the extractor's fingerprint. A component that breaks any of these
fails later, far from its cause; the kit fails it here, by name.

The kit is a package with one module per component kind (``scorers``,
``losses``, ``models``, ``extractors``, ``generators``, ``estimators``), the
shared pieces in ``common`` and ``requirements``, and the dispatch in
``runner``; every public name is importable from ``ahl_plugins.testing``.
"""

from ahl_plugins.testing.common import FEATURE_KINDS, ContractError, ContractReport, feature_spec, synthetic_features
from ahl_plugins.testing.estimators import check_estimator
from ahl_plugins.testing.extractors import check_extractor
from ahl_plugins.testing.generators import check_generator
from ahl_plugins.testing.losses import check_loss
from ahl_plugins.testing.models import check_model
from ahl_plugins.testing.requirements import REQUIREMENTS
from ahl_plugins.testing.runner import (
    check_all,
    check_component,
    components_of,
    parametrize_components,
    resolve_targets,
    run_checks,
)
from ahl_plugins.testing.scorers import check_scorer

__all__ = [
    "FEATURE_KINDS",
    "REQUIREMENTS",
    "ContractError",
    "ContractReport",
    "check_all",
    "check_component",
    "check_estimator",
    "check_extractor",
    "check_generator",
    "check_loss",
    "check_model",
    "check_scorer",
    "components_of",
    "feature_spec",
    "parametrize_components",
    "resolve_targets",
    "run_checks",
    "synthetic_features",
]
