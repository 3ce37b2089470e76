"""One writer per compare directory: a second compare is refused, a dead one's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ahl_plugins.errors import OutputLockedError
from ahl_plugins.evaluation.compare import LOCK_FILE, CompareConfig, OutputLock, load_results, run_compare

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from fakes import FakeRunner, synthetic_dataset  # noqa: E402 - importable once HERE is on sys.path

ARGS = {
    "data": "synthetic",
    "models": ["devnet", "dra"],
    "settings": ["general"],
    "n_anomalies": [5],
    "seeds": 2,
    "progress": False,
}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow  # a few seconds of real processes; the full suite runs it
def test_a_second_compare_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "cmp"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from fakes import SlowRunner, synthetic_dataset
        from ahl_plugins.evaluation.compare import CompareConfig, run_compare
        run_compare(CompareConfig(**{ARGS!r}), {str(out)!r}, runner=SlowRunner(1.0), dataset=synthetic_dataset(), plots=False)
        """
    )
    first = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "results.csv").is_file() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert (out / "results.csv").is_file(), first.stderr.read() if first.poll() is not None else "timed out"
        with pytest.raises(OutputLockedError, match=rf"another ahl compare \(host .*, pid {first.pid}\)") as caught:
            run_compare(CompareConfig(**ARGS), out, runner=FakeRunner(), dataset=synthetic_dataset(), plots=False)
        assert "another --output" in str(caught.value)
        assert first.poll() is None, "the refused compare must not disturb the running one"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = {r["cell_id"] for r in load_results(out)}
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == first.pid  # left behind by the kill
    runner = FakeRunner()
    result = run_compare(CompareConfig(**ARGS), out, runner=runner, dataset=synthetic_dataset(), plots=False)
    assert set(result.reused) == before and not set(runner.calls) & before
    assert len(result.rows) == 10
    assert not (out / LOCK_FILE).exists(), "the lock goes with the compare that held it"


def test_lock_file_holds_the_owner_and_is_released(tmp_path):
    path = tmp_path / LOCK_FILE
    with OutputLock(path):
        assert json.loads(path.read_text()) == {"host": socket.gethostname(), "pid": os.getpid()}
        with pytest.raises(OutputLockedError, match=rf"pid {os.getpid()}"):
            OutputLock(path).acquire()  # a second writer in the same process is refused too
    assert not path.exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    path = tmp_path / LOCK_FILE
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid()}))
    lock = OutputLock(path).acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


def test_lock_of_another_machine_is_never_stolen(tmp_path):
    path = tmp_path / LOCK_FILE
    path.write_text(json.dumps({"host": "some-other-node", "pid": _dead_pid()}))
    with pytest.raises(OutputLockedError, match=r"host some-other-node.*delete .*\.compare\.lock"):
        OutputLock(path).acquire()
    assert json.loads(path.read_text())["host"] == "some-other-node"


def test_cli_says_who_holds_the_directory(tmp_path):
    from click.testing import CliRunner

    from ahl_plugins.cli import cli

    out = tmp_path / "cmp"
    out.mkdir()
    (out / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))  # a live holder
    result = CliRunner().invoke(cli, ["compare", "--data", "digits", "--output", str(out), "--quiet"])
    assert result.exit_code == 1
    assert f"is being written by another ahl compare (host {socket.gethostname()}, pid {os.getpid()})" in result.output
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE], "a refused compare writes nothing"
