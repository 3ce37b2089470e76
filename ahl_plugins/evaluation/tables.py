"""Text primitives every report of this package shares: numbers, labels and tables as Markdown or plain text.

They sit below every writer (compare summaries, gain tables, ``ahl report``,
plots), so the writers import them and never each other: one way, no circles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ahl_plugins.evaluation.grid import ABLATIONS, AHL, BASE, VARIANT_ORDER

METRIC_NAMES = {"auc_roc": "AUC-ROC", "auc_pr": "AUC-PR", "pixel_auroc": "pixel AUROC", "pixel_aupro": "AUPRO"}


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """A table as Markdown or as aligned plain text."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h)) for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(x.rstrip() for x in out)


def fmt(stat: Mapping[str, Any] | None, signed: bool = False) -> str:
    """``mean ± std`` of a stats block (just the mean for one seed), ``-`` when it has none."""
    if not stat or stat.get("mean") is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{stat['mean']:{sign}.3f}"
    if stat.get("n", 0) > 1:
        text += f" ± {stat['std']:.3f}"
    return text


def signed(value: float | None) -> str:
    """A gain with its sign, three decimals."""
    return "-" if value is None else f"{value:+.3f}"


def interval(block: Mapping[str, Any]) -> str:
    """``[low, high]`` of a block with ``ci_low`` / ``ci_high``, ``-`` without one (fewer than 2 seeds)."""
    if block.get("ci_low") is None:
        return "-"
    return f"[{block['ci_low']:+.3f}, {block['ci_high']:+.3f}]"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def variant_label(model: str, variant: str) -> str:
    """How a model's variant is named in every table: ``devnet``, ``AHL(devnet)``, ``AHL-uniform(devnet)``."""
    if variant == BASE:
        return model
    if variant == AHL:
        return f"AHL({model})"
    if variant in ABLATIONS:
        return f"AHL-{ABLATIONS[variant]}({model})"
    return model


def gain_label(model: str, variant: str) -> str:
    """``AHL(devnet) − devnet``: a paired gain is always a variant minus its own base."""
    return f"{variant_label(model, variant)} − {model}"


def variant_rank(variant: str) -> int:
    """Position of a variant in tables: k-NN, base, AHL, then the ablations; unknown names last."""
    return VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)
