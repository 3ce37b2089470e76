"""Hook specifications: the whole plugin surface of ahl-plugins.

Every hook is a *register-callback* hook (the simonw/llm pattern): the host
calls it once per plugin with a ``register`` function, and the plugin calls
``register(name, ...)`` for each component it provides. The host keeps one
name-keyed registry per component kind; pluggy's call order is never relied on.

Label convention used by every component: ``0`` normal, ``1`` seen (labelled)
anomaly, ``2`` pseudo anomaly made by a generator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ahl_plugins.contracts import Register

PROJECT_NAME = "ahl_plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def ahl_register_feature_extractors(register: Register) -> None:
    """Register frozen feature extractors.

    Call ``register(name, factory, options=OptionsModel, description=...)``.
    ``factory(options)`` must return a :class:`~ahl_plugins.contracts.FeatureExtractor`:
    it maps a batch of prepared inputs (images ``B×3×S×S`` in ``[0, 1]``, or
    vectors ``B×D``) to one tensor per scale, ``B×C×H×W`` maps or ``B×D``
    vectors, described by its ``spec``; ``fingerprint()`` must change whenever
    its output could (weights, tap, input size, normalisation), since the
    feature cache is keyed on it.
    """


@hookspec
def ahl_register_scorers(register: Register) -> None:
    """Register scoring heads.

    Call ``register(name, factory, options=OptionsModel, description=...)``.
    ``factory(spec, options)`` receives the extractor's
    :class:`~ahl_plugins.contracts.FeatureSpec` and returns a
    :class:`torch.nn.Module` that maps a list of per-scale feature tensors to a
    dict of named head scores, each of shape ``(B,)``, and whose
    ``combine(heads)`` turns them into one anomaly score (higher = more
    anomalous). All state that changes the output must be a parameter or a
    buffer, so that ``torch.func.functional_call`` can swap it: the AHL learner
    relies on that to adapt copies of the heads.

    A scorer may also draw per-position head maps for training: it lists their
    names in ``position_heads`` and adds them (``B×h×w`` each) when called as
    ``forward(features, positions=True)``; see
    :class:`~ahl_plugins.contracts.Scorer` and docs/plugins.md ("Pixel masks").
    """


@hookspec
def ahl_register_losses(register: Register) -> None:
    """Register base anomaly losses.

    Call ``register(name, factory, options=OptionsModel, description=...)``.
    ``factory(options)`` returns a callable ``loss(heads, labels) -> scalar``:
    ``heads`` is the scorer's dict of ``(B,)`` head scores, ``labels`` a
    ``(B,)`` integer tensor with 0 normal, 1 seen anomaly, 2 pseudo anomaly.
    The loss must be differentiable in the head scores and pure (no hidden
    randomness per call), so meta-gradients are well defined.

    A loss that sets ``uses_position_labels = True`` is called as
    ``loss(heads, labels, positions=...)`` instead: ``positions`` maps each of
    the scorer's ``position_heads`` to a ``B×h×w`` float target (1 defect, 0
    clean, NaN unknown: a labelled anomaly without a mask), built from the
    ground-truth masks of labelled anomalies and the masks of image pseudo
    anomalies (:class:`~ahl_plugins.contracts.PositionLoss`). Losses without
    the attribute get exactly ``loss(heads, labels)``.
    """


@hookspec
def ahl_register_models(register: Register) -> None:
    """Register OSAD models: an extractor, a scorer and a loss bundled by name.

    Call ``register(name, ModelSpec(...))``. Every registered model can be
    trained plainly or wrapped by the AHL learner; the names it refers to may
    come from any plugin, and are resolved when the model is built.
    """


@hookspec
def ahl_register_pseudo_anomaly_generators(register: Register) -> None:
    """Register pseudo-anomaly generators (label 2).

    Call ``register(name, factory, options=OptionsModel, description=...)``.
    ``factory(options)`` returns a
    :class:`~ahl_plugins.contracts.PseudoAnomalyGenerator` whose
    ``generate(x, pool, generator)`` returns ``(anomalies, mask)``: images are
    ``B×3×S×S`` in ``[0, 1]`` before normalisation, vectors ``B×D`` features;
    the output must depend only on its inputs and the seeded
    ``torch.Generator``. An image generator's mask is its pseudo anomaly's
    per-pixel label for losses that take per-position labels.
    """


@hookspec
def ahl_register_estimators(register: Register) -> None:
    """Register generalizability estimators that weight the AHL tasks.

    Call ``register(name, factory, options=OptionsModel, description=...)``.
    ``factory(n_tasks, options)`` returns a
    :class:`~ahl_plugins.contracts.GeneralizabilityEstimator`; its
    ``task_weights(history, targets, error_weights)`` returns ``(T,)`` weights
    summing to 1.
    """
