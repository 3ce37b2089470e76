"""What every benchmark script shares: paths, common flags, resumable JSON-lines rows, the page writer.

A benchmark fits many small units (a config on a case and seed, a detector on a split) that take
minutes each, on a machine shared with other jobs. So each finished unit is appended to a JSON-lines
file at once, a run started again skips the units already on disk, and the Markdown page under
``docs/benchmarks/`` is rebuilt from every row on disk (``--report-only``: without fitting anything).

This module imports only the standard library (and torch, lazily, for the machine footer), so that
any script can use it, including the one that times an older checkout's code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

#: the repository root (the folder holding ``benchmarks/``)
ROOT = Path(__file__).resolve().parents[1]
#: the real data sets, kept beside the checkout (absent in a user's clone)
SHARED_DATA = ROOT.parent / "shared" / "data"
#: tracked result folders, one per benchmark, each with its MANIFEST.md
RESULTS = ROOT / "benchmarks" / "results"
#: the pages the benchmarks write
PAGES = ROOT / "docs" / "benchmarks"

Row = dict[str, Any]
RowKey = Callable[[Row], tuple]

#: the footer's usual note on timings: the machine is shared
SHARED_MACHINE = "other jobs running beside it (fit seconds are indicative)."


def command(module: str, args: Iterable[str] = ()) -> str:
    """How a page says it was made: ``python -m benchmarks.<module> [args]``."""
    return " ".join(["python -m benchmarks." + module, *args])


def add_common_flags(parser: argparse.ArgumentParser, *, results: Path, page: Path, tagged: bool = True) -> None:
    """The flags every resumable benchmark takes: threads, where rows and page go, and --report-only.

    ``tagged``: ``results`` is a folder of ``*.jsonl`` files and this run appends to ``<results>/<tag>.jsonl``
    (several runs may write side by side, e.g. one per model); otherwise ``results`` is one file.
    """
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for the small heads)")
    if tagged:
        parser.add_argument("--results", type=Path, default=results, help="folder of *.jsonl result files")
        parser.add_argument("--tag", default="main", help="this run appends to <results>/<tag>.jsonl")
    else:
        parser.add_argument("--results", type=Path, default=results, help="the JSON-lines result file")
    parser.add_argument("--page", type=Path, default=page, help="the Markdown page rebuilt from every row on disk")
    parser.add_argument(
        "--report-only", action="store_true", help="rebuild the page from the rows on disk; fit nothing"
    )


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: how the scripts take lists of models, configs and cases."""
    return [item.strip() for item in text.split(",") if item.strip()]


def read_rows(source: Path) -> list[Row]:
    """Every row of ``source``: one JSON-lines file, or every ``*.jsonl`` of a folder in name order.

    A line cut short (a run killed mid-write) is skipped: that unit did not finish and runs again.
    A missing source has no rows.
    """
    files = sorted(source.glob("*.jsonl")) if source.is_dir() else [source] if source.is_file() else []
    return [row for path in files for row in _parse_lines(path)]


def _parse_lines(path: Path) -> Iterator[Row]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue


def append_row(path: Path, row: Row) -> None:
    """Append one row and fsync it, so a kill loses at most the unit in progress."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(row) + "\n"
    if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        text = "\n" + text  # never glue a row onto a line cut short
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


class ResumableRows:
    """The rows on disk by key (a later row wins), and where this run appends its new ones.

    ``key in rows`` says a unit is done; :meth:`add` records a finished unit on disk and in memory.
    """

    def __init__(self, read_from: Path, write_to: Path, key: RowKey) -> None:
        self.write_to = write_to
        self.key = key
        self.by_key: dict[tuple, Row] = {key(row): row for row in read_rows(read_from)}

    def __contains__(self, key: tuple) -> bool:
        return key in self.by_key

    def add(self, row: Row) -> None:
        append_row(self.write_to, row)
        self.by_key[self.key(row)] = row


def open_rows(args: argparse.Namespace, key: RowKey) -> ResumableRows:
    """The rows for :func:`add_common_flags`'s ``--results`` (and ``--tag``)."""
    write_to = args.results / f"{args.tag}.jsonl" if hasattr(args, "tag") else args.results
    return ResumableRows(args.results, write_to, key)


def machine_footer(note: str = SHARED_MACHINE) -> list[str]:
    """The page's closing section: where the page was built (platform, Python, torch and its threads)."""
    import torch

    return [
        "## Machine",
        "",
        f"{platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), {note}",
        "",
    ]


def write_page(path: Path, lines: list[str], *, machine: str | None) -> Path:
    """Write a Markdown page; ``machine``: the footer's note, or None for a page without a machine footer."""
    if machine is not None:
        lines = [*lines, *machine_footer(machine)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {path}")
    return path
