"""DeepOD's headline numbers as tracked data: written by ``benchmarks.peers``, read by ``benchmarks.run_results``.

One JSON line per row of the *At a glance* table of ``docs/benchmarks/peers.md``: a data set, a setting
(general; hard as the mean over its seen types, or the one type it has) and a detector, with its AUC-ROC
mean and std over seeds. DeepOD's raw per-seed rows are large and were kept outside the repository; these
rows are what other pages put beside ours, so they live here and no page is parsed back into numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS, read_rows

#: the tracked file (``benchmarks/results/peers/MANIFEST.md`` says where its rows came from)
PEER_ROWS = RESULTS / "peers" / "headline_auc_roc.jsonl"

#: the fields a headline row keeps (``auc_roc``: ``{"mean", "std"}``; ``complete``: every seen type finished)
FIELDS = ("data", "setting", "n_anomalies", "seen_type", "detector", "complete", "epochs", "auc_roc")


def headline_row(group: dict[str, Any], epochs: int | None) -> dict[str, Any]:
    """A summary group of ``benchmarks.peers`` reduced to what the headline table shows."""
    return {
        "data": group["data"],
        "setting": group["setting"],
        "n_anomalies": group["n_anomalies"],
        "seen_type": group["seen_type"],
        "detector": group["detector"],
        "complete": group.get("complete", True),
        "epochs": epochs,
        "auc_roc": {"mean": group["auc_roc"]["mean"], "std": group["auc_roc"]["std"]},
    }


def write_peer_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace ``path`` with ``rows`` (the whole table: a peers run rewrites it from every row it has)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({k: row[k] for k in FIELDS}) + "\n" for row in rows), encoding="utf-8")


def read_peer_rows(path: Path = PEER_ROWS) -> list[dict[str, Any]]:
    """The headline rows on disk (none when the file is absent)."""
    return read_rows(path)
