"""The one way this package makes a matplotlib figure, below every module that draws.

Agg backend through ``Figure`` objects: no pyplot state, no display needed,
and safe in worker processes. matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

from typing import Any


def figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of ``width`` × ``height`` inches with constrained layout."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")
