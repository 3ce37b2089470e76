"""Executors: --jobs N and Ray give the serial results cell by cell, survive a killed worker, resume."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ahl_plugins.errors import ExecutorError, InvalidOptionsError
from ahl_plugins.evaluation.compare import CompareConfig, DetectorRunner, load_results, parse_config, run_compare

sys.path.insert(0, str(Path(__file__).parent))
from fakes import FakeRunner, KillingRunner, UnloadableRunner, synthetic_dataset

#: What a cell computes (times differ from run to run; everything else must not).
SAME = (
    "cell_id",
    "status",
    "auc_roc",
    "auc_pr",
    "n_train_normals",
    "n_train_anomalies",
    "n_test_normals",
    "n_test_anomalies",
    "unseen_types",
    "extractor",
    "reason",
)
#: A real grid, tiny: DevNet base and AHL on synthetic vectors, one epoch, 2 splits x 3 cells.
REAL = {
    "data": "synthetic",
    "models": ["devnet"],
    "settings": ["general", "hard"],
    "anomaly_types": ["alpha"],
    "n_anomalies": [5],
    "seeds": 1,
    "epochs": 1,
    "threads": 1,
    "progress": False,
    "options": {"batches_per_epoch": 4, "n_pseudo": 20},
}
FAKE = {
    "data": "synthetic",
    "models": ["devnet", "dra"],
    "settings": ["general"],
    "n_anomalies": [5],
    "seeds": 2,
    "threads": 1,
    "progress": False,
}
KILLED = "devnet__ahl__general-M5-all-s0"


def _run(out, args, runner=None, **overrides):
    config = CompareConfig(**{**args, **overrides})
    runner = runner if runner is not None else DetectorRunner(config)
    return run_compare(config, out, runner=runner, dataset=synthetic_dataset(), plots=False)


def _table(out):
    rows = sorted(load_results(out), key=lambda r: r["cell_id"])
    return [{k: r[k] for k in SAME} for r in rows]


def _scores(out):
    return {p.stem: np.load(p)["scores"] for p in sorted((out / "cells").glob("*.npz"))}


def _same_as(serial, other):
    assert _table(other) == _table(serial)
    expected, got = _scores(serial), _scores(other)
    assert expected.keys() == got.keys()
    for cell_id, scores in expected.items():
        np.testing.assert_array_equal(got[cell_id], scores, err_msg=cell_id)


@pytest.fixture(scope="module")
def serial_real(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "cmp"
    result = _run(out, REAL)
    assert len(result.computed) == 6 and not result.failed
    return out


@pytest.mark.slow  # a few seconds of real processes; the full suite runs it
def test_jobs_2_matches_serial_cell_by_cell_and_survives_a_killed_worker(serial_real, tmp_path):
    out = tmp_path / "cmp"
    config = CompareConfig(**{**REAL, "jobs": 2})
    runner = KillingRunner(DetectorRunner(config), KILLED, str(tmp_path / "died"))
    result = _run(out, REAL, runner=runner, jobs=2)
    assert (tmp_path / "died").read_text() == "1", "the worker was not killed"
    assert not result.failed and len(result.computed) == 6
    _same_as(serial_real, out)
    again = _run(out, REAL, runner=FakeRunner(), jobs=2)  # resumes: a fake runner would change any cell it ran
    assert again.computed == [] and len(again.reused) == 6
    _same_as(serial_real, out)


def test_a_dead_worker_or_a_cell_error_fails_that_cell_only_and_a_rerun_retries_it(tmp_path):
    out = tmp_path / "cmp"
    runner = KillingRunner(_Broken(), KILLED, str(tmp_path / "died"), always=True)
    result = _run(out, FAKE, runner=runner, jobs=2)
    assert (tmp_path / "died").read_text() == "2", "a worker that died once is retried once"
    broken = ["dra__ahl__general-M5-all-s0", "dra__ahl__general-M5-all-s1"]
    assert sorted(result.failed) == sorted([KILLED, *broken]) and len(result.computed) == 7
    reasons = {r["cell_id"]: r["reason"] for r in result.rows if r["status"] == "failed"}
    assert reasons[KILLED].startswith("WorkerLost:") and "2 times" in reasons[KILLED] and "SIGKILL" in reasons[KILLED]
    assert reasons[broken[0]] == reasons[broken[1]] == "ZeroDivisionError: dra ahl cannot"
    rerun = _run(out, FAKE, runner=FakeRunner(), jobs=2)  # failed cells are tried again on a rerun
    assert sorted(rerun.computed) == sorted([KILLED, *broken]) and not rerun.failed
    serial = tmp_path / "serial"
    _run(serial, FAKE, runner=FakeRunner())
    _same_as(serial, out)


class _Broken(FakeRunner):
    def __call__(self, cell, data):
        if (cell.model, cell.variant) == ("dra", "ahl"):
            raise ZeroDivisionError("dra ahl cannot")
        return super().__call__(cell, data)


def test_workers_that_cannot_start_stop_the_grid_with_a_clear_error(tmp_path):
    with pytest.raises(ExecutorError, match="worker process could not start.*__main__"):
        _run(tmp_path / "cmp", FAKE, runner=UnloadableRunner(), jobs=2)
    assert not (tmp_path / "cmp" / ".compare.lock").exists()
    assert _run(tmp_path / "cmp", FAKE, runner=FakeRunner()).computed  # the directory stays usable


def test_executor_arguments_are_checked():
    with pytest.raises(InvalidOptionsError, match="--jobs is for the local executor"):
        parse_config(data="digits", executor="ray", jobs=2)
    with pytest.raises(InvalidOptionsError, match="--ray-address needs --executor ray"):
        parse_config(data="digits", ray_address="10.0.0.1:6379")
    with pytest.raises(InvalidOptionsError, match="executor"):
        parse_config(data="digits", executor="dask")
    # where and how a grid runs is not what it computes: a resume accepts other executors
    assert parse_config(data="digits", jobs=4).identity() == parse_config(data="digits", executor="ray").identity()


def test_ray_missing_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(InvalidOptionsError, match=r"pip install 'ahl-plugins\[ray\]'"):
        _run(tmp_path / "cmp", FAKE, runner=FakeRunner(), executor="ray")


def test_an_unreachable_ray_address_fails_fast_and_clearly(tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra 'ray'")
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InvalidOptionsError, match=rf"no Ray cluster answers at 127.0.0.1:{port}.*ray start --head"):
        _run(tmp_path / "cmp", FAKE, runner=FakeRunner(), executor="ray", ray_address=f"127.0.0.1:{port}")


# -- Ray ----------------------------------------------------------------------------------


# Ray's start and its workers' first torch import take over 30 s on a loaded 2-core machine: slow.
@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is the optional extra 'ray': pip install 'ahl-plugins[ray]'")
    from ahl_plugins.evaluation.compare.ray_executor import local_runtime_env

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 2**20,
        runtime_env=local_runtime_env(),
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_matches_serial_survives_a_killed_worker_and_resumes(local_ray, serial_real, tmp_path):
    out = tmp_path / "cmp"
    config = CompareConfig(**{**REAL, "executor": "ray"})
    runner = KillingRunner(DetectorRunner(config), KILLED, str(tmp_path / "died"))
    result = _run(out, REAL, runner=runner, executor="ray")
    assert (tmp_path / "died").read_text() == "1", "the Ray worker was not killed"
    assert not result.failed and len(result.computed) == 6
    _same_as(serial_real, out)
    again = _run(out, REAL, runner=FakeRunner(), executor="ray")
    assert again.computed == [] and len(again.reused) == 6
    assert local_ray.is_initialized(), "a Ray the caller started is the caller's to shut down"


@pytest.mark.slow
def test_ray_records_a_cell_whose_worker_dies_twice(local_ray, tmp_path):
    runner = KillingRunner(FakeRunner(), KILLED, str(tmp_path / "died"), always=True)
    result = _run(tmp_path / "cmp", FAKE, runner=runner, executor="ray")
    assert (tmp_path / "died").read_text() == "2"
    assert result.failed == [KILLED] and len(result.computed) == 9
    reason = next(r["reason"] for r in result.rows if r["cell_id"] == KILLED)
    assert reason.startswith("WorkerLost: the Ray task died 2 times")


def test_image_cells_wait_for_the_first_fit_on_their_split_that_caches_the_pseudo_anomalies(monkeypatch):
    import ahl_plugins.evaluation.compare.driver as driver
    from ahl_plugins.evaluation.grid import build_grid

    class Images:
        input_kind = "image"

    monkeypatch.setattr(driver, "split_data", lambda dataset, key: key)  # no real data needed: the split is its key
    grid = build_grid(["devnet", "dra"], ["general"], [5], [], [0, 1], False, [("knn", "devnet")])
    pending = driver._Grid(grid, Images(), CompareConfig(data="x", models=["devnet", "dra"], extractor="resnet18"))
    started = [pending.next_ready()[0].id for _ in range(4)]
    # split 0: k-NN and the first fit may run; the others wait for that fit, so split 1 opens meanwhile
    assert started == [
        "knn__knn__general-M5-all-s0",
        "devnet__base__general-M5-all-s0",
        "knn__knn__general-M5-all-s1",
        "devnet__base__general-M5-all-s1",
    ]
    assert pending.next_ready() is None and pending
    pending.finished("devnet__base__general-M5-all-s0")
    assert [pending.next_ready()[0].id for _ in range(3)] == [
        "devnet__ahl__general-M5-all-s0",
        "dra__base__general-M5-all-s0",
        "dra__ahl__general-M5-all-s0",
    ]
