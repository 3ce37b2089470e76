"""The AHL learner: HADG tasks, CDL meta-learning and SGE task weights on frozen features.

Imports torch; the host imports this package only when AHL is actually used.
"""

from __future__ import annotations

from ahl_plugins.ahl.cdl import MetaLearner, TaskBatch, TaskSampler
from ahl_plugins.ahl.ensemble import EnsembleScorer, train_ensemble
from ahl_plugins.ahl.guard import train_ahl_guarded
from ahl_plugins.ahl.hadg import (
    Clustering,
    SampleLayout,
    Task,
    TaskSet,
    build_tasks,
    cluster_normals,
)
from ahl_plugins.ahl.options import AHLOptions
from ahl_plugins.ahl.sge import normalise_scores
from ahl_plugins.ahl.trainer import train_ahl

__all__ = [
    "AHLOptions",
    "Clustering",
    "EnsembleScorer",
    "MetaLearner",
    "SampleLayout",
    "Task",
    "TaskBatch",
    "TaskSampler",
    "TaskSet",
    "build_tasks",
    "cluster_normals",
    "normalise_scores",
    "train_ahl",
    "train_ahl_guarded",
    "train_ensemble",
]
