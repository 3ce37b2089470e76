"""Evaluation: metrics, the label-free k-NN reference, the compare grid, reports and plots.

Submodules are imported on use (``from ahl_plugins.evaluation.compare import
run_compare``) so that importing the package stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CompareConfig", "auc_pr", "auc_roc", "evaluate", "knn_scores", "run_compare"]

_WHERE = {
    "CompareConfig": "compare",
    "run_compare": "compare",
    "auc_roc": "metrics",
    "auc_pr": "metrics",
    "evaluate": "metrics",
    "knn_scores": "knn",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f"ahl_plugins.evaluation.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'ahl_plugins.evaluation' has no attribute {name!r}")
