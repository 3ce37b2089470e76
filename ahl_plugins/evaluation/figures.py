"""The one way this package makes a matplotlib figure, below every module that draws.

Agg backend through ``Figure`` objects: no pyplot state, no display needed,
and safe in worker processes. matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

import textwrap
from typing import Any

# The widest a DejaVu Sans character runs, in ems: lines wrapped at this width never overrun their figure.
CHAR_EMS = 0.62


def figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of ``width`` × ``height`` inches with constrained layout."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def wrapped(text: str, width: float, fontsize: float) -> str:
    """``text`` broken into lines that fit ``width`` inches at ``fontsize`` points.

    Constrained layout makes room for a title but cannot shrink one wider than its figure: such a title is
    cut off at both edges. Titles here name models, settings and data sets, so their length is not known in advance.
    """
    chars = max(16, int(0.92 * width * 72 / (CHAR_EMS * fontsize)))
    return "\n".join(textwrap.wrap(text, chars, break_long_words=True, break_on_hyphens=False)) or text
