"""``ahl score``'s CSV written as it goes, and picked up again after an interruption.

While a run is in progress a marker ``<output>.progress.json`` beside the CSV names the model (a hash of its
``config.json``) and the data. A run that finds the marker for the same model and data keeps the rows already
in the CSV (a row cut short by the interruption is dropped) and scores only the rest; any other CSV is
replaced. The marker is removed when the run finishes, so a finished CSV is never extended.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any, TextIO

from ahl_plugins.atomic import atomic_write_text

HEADER = ["id", "score", "label", "type"]


def progress_file(output: Path) -> Path:
    return output.with_name(output.name + ".progress.json")


def profile_file(output: Path) -> Path:
    """Where the batch's comparison with the model's data profile goes: ``scores.csv`` -> ``scores.profile.json``."""
    return output.with_name(output.stem + ".profile.json")


def run_identity(model_dir: Path, data: str, data_options: tuple[str, ...]) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one: the same saved model and the same data."""
    config = (model_dir / "config.json").read_bytes()
    return {
        "model": hashlib.sha256(config).hexdigest(),
        "data": str(Path(data).expanduser().resolve()) if Path(data).expanduser().exists() else data,
        "data_options": sorted(data_options),
    }


class ScoreCsv:
    """The scores CSV, appended a chunk at a time (flushed and synced, so an interruption loses one chunk)."""

    def __init__(self, output: Path, identity: dict[str, Any]) -> None:
        self.output = output
        self.marker = progress_file(output)
        self.done: dict[str, float] = {}
        resumable = self.output.is_file() and self._marker_matches(identity)
        if resumable:
            self.done = self._rows_on_disk()
        self.resumed = len(self.done)  # rows kept from an interrupted run
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.marker, json.dumps(identity))
        self.handle: TextIO = output.open("a" if resumable else "w", newline="")
        self.writer = csv.writer(self.handle)
        if not resumable:
            self.writer.writerow(HEADER)
            self.flush()

    def _marker_matches(self, identity: dict[str, Any]) -> bool:
        try:
            return json.loads(self.marker.read_text()) == identity
        except (OSError, ValueError):
            return False

    def _rows_on_disk(self) -> dict[str, float]:
        """The complete rows of an interrupted run; the file is cut back to its last complete line."""
        payload = self.output.read_bytes()
        keep = payload[: payload.rfind(b"\n") + 1]
        if len(keep) != len(payload):
            with self.output.open("r+b") as handle:
                handle.truncate(len(keep))
        rows = list(csv.reader(keep.decode("utf-8").splitlines()))
        if not rows or rows[0] != HEADER:
            self.output.write_text(",".join(HEADER) + "\n")
            return {}
        done = {}
        for row in rows[1:]:
            try:
                done[row[0]] = float(row[1])
            except (IndexError, ValueError):
                continue
        return done

    def write(self, rows: list[list[Any]]) -> None:
        for sample_id, value, label, kind in rows:
            self.writer.writerow([sample_id, f"{value:.6g}", label, kind])
            self.done[sample_id] = float(f"{value:.6g}")
        self.flush()

    def flush(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def finish(self) -> None:
        """Close the CSV and remove the progress marker: the run is complete."""
        self.handle.close()
        self.marker.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the CSV and keep the marker (an interrupted run: the next one resumes)."""
        if not self.handle.closed:
            self.handle.close()
