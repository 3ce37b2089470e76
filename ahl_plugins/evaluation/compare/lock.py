"""One writer per compare directory: a lock file holding the owner's host and pid.

Two compares appending to one ``results.csv`` would interleave rows and each
recompute the other's cells. The lock is created with ``O_EXCL`` (atomic on
local and NFSv3+ file systems); a lock whose process is gone (killed, crashed,
machine rebooted) is stale and taken over, so a killed compare never blocks
its own resume.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import TracebackType

from ahl_plugins.errors import OutputLockedError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class OutputLock:
    """``with OutputLock(output / LOCK_FILE): ...`` holds the directory for this process."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.owner = {"host": socket.gethostname(), "pid": os.getpid()}
        self.held = False

    def acquire(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # create; or find a stale lock, move it away and create again
            if self._create():
                self.held = True
                return self
            holder = self._holder()
            if holder is not None and not self._stale(holder):
                raise OutputLockedError(
                    f"{self.path.parent} is being written by another ahl compare (host {holder.get('host')}, pid "
                    f"{holder.get('pid')}); wait for it to finish, or use another --output. If no such process "
                    f"exists, delete {self.path}"
                )
            self._take_over(holder)
        raise OutputLockedError(f"could not take the lock {self.path}: another compare keeps replacing it")

    def _create(self) -> bool:
        """Link a complete lock file into place: readers never see a half-written one."""
        tmp = self.path.with_name(f"{self.path.name}.{self.owner['pid']}.tmp")
        tmp.write_text(json.dumps(self.owner))
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def _take_over(self, stale: dict | None) -> None:
        """Move the stale lock aside; if a live compare replaced it meanwhile, put that one back."""
        aside = self.path.with_name(f"{self.path.name}.{self.owner['pid']}.stale")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = None
        if moved != stale:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    def _holder(self) -> dict | None:
        """The recorded owner; ``None`` for an unreadable (half-written) file, which counts as stale."""
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None

    def _stale(self, holder: dict) -> bool:
        if holder.get("host") != self.owner["host"]:
            return False  # cannot see another machine's processes: never steal its lock
        return holder["pid"] != os.getpid() and not _alive(holder["pid"])

    def release(self) -> None:
        if self.held and self._holder() == self.owner:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
