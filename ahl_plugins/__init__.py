"""ahl-plugins: Anomaly Heterogeneity Learning for open-set supervised anomaly detection.

Heavy modules (torch) are imported only when their names are used, so the CLI
and plugin listing stay fast.
"""

from __future__ import annotations

from typing import Any

from ahl_plugins.contracts import (
    LABEL_NORMAL,
    LABEL_PSEUDO,
    LABEL_SEEN,
    FeatureExtractor,
    FeatureSpec,
    GeneralizabilityEstimator,
    ModelSpec,
    PseudoAnomalyGenerator,
)
from ahl_plugins.hookspecs import hookimpl

# The one place the version is written: pyproject.toml reads it (setuptools dynamic version), CHANGELOG.md
# describes it, and `ahl --version` prints it.
__version__ = "0.2.0"

__all__ = [
    "LABEL_NORMAL",
    "LABEL_PSEUDO",
    "LABEL_SEEN",
    "FeatureExtractor",
    "FeatureSpec",
    "GeneralizabilityEstimator",
    "ModelSpec",
    "OSADDetector",
    "PseudoAnomalyGenerator",
    "__version__",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    if name == "OSADDetector":
        from ahl_plugins.detector import OSADDetector

        return OSADDetector
    raise AttributeError(f"module 'ahl_plugins' has no attribute {name!r}")
