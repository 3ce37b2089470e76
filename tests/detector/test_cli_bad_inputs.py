"""Bad input on the command line: refused with a hint that works, and nothing of the user's lost."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ahl_plugins.cli import cli

FAST = ["-o", "epochs=1", "-o", "batches_per_epoch=2", "-o", "n_pseudo=8", "-o", "use_cache=false"]
SMALL_RESNET = ["--extractor-option", "weights=none", "--extractor-option", "image_size=32"]


@pytest.fixture
def blobs_npz(blobs, tmp_path):
    X, y, X_test, y_test = blobs
    path = tmp_path / "blobs.npz"
    np.savez(path, X=np.concatenate([X, X_test]), y=np.r_[y, y_test])
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_fit_refuses_to_replace_a_saved_model_unless_told(blobs_npz, tmp_path):
    out = tmp_path / "model"
    assert invoke("fit", "--data", blobs_npz, "--output", out, *FAST).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = invoke("fit", "--data", blobs_npz, "--output", out, "--seed", "1", *FAST)
    assert result.exit_code == 2 and "already holds a saved model; pass --overwrite" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    result = invoke("fit", "--data", blobs_npz, "--output", out, "--seed", "1", "--overwrite", *FAST)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 1


@pytest.mark.parametrize(
    ("flag", "hint"),
    [
        (["--epochs", "1"], "-o epochs=1;"),
        (["--epochs=3"], "-o epochs=3;"),
        (["--n-clusters", "2"], "-o n_clusters=2 (an AHL option: add --ahl)"),
    ],
)
def test_a_model_option_given_as_a_flag_gets_the_o_hint(blobs_npz, tmp_path, flag, hint):
    result = invoke("fit", "--data", blobs_npz, "--output", tmp_path / "m", *flag)
    assert result.exit_code == 2 and "No such option" in result.output and hint in result.output


def test_an_unknown_flag_that_is_no_option_keeps_clicks_message(blobs_npz, tmp_path):
    result = invoke("fit", "--data", blobs_npz, "--output", tmp_path / "m", "--bogus")
    assert result.exit_code == 2 and "No such option '--bogus'" in result.output and "-o" not in result.output


def test_show_options_prints_factory_defaults(tmp_path):
    result = invoke("fit", "--data", "digits", "--ahl", "--show-options")
    assert result.exit_code == 0, result.output
    assert "PydanticUndefined" not in result.output
    assert "estimator_options = {}" in result.output


def test_fit_with_every_anomaly_labelled_needs_no_test_set(blobs, tmp_path):
    X, y, _, _ = blobs
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:1]]
    np.savez(tmp_path / "one.npz", X=X[keep], y=y[keep])
    result = invoke("fit", "--data", tmp_path / "one.npz", "--n-anomalies", "1", "--output", tmp_path / "m", *FAST)
    assert result.exit_code == 0, result.output
    assert "and 1 labelled anomalies" in result.output
    split = json.loads((tmp_path / "m" / "split.json").read_text())
    assert split["test"]["labels"].count(1) == 0


def test_score_refuses_to_write_over_its_input_table(blobs, tmp_path):
    X, y, _, _ = blobs
    table = tmp_path / "table.csv"
    table.write_text(
        "a,b,c,d,e,f,g,h,label\n" + "\n".join(",".join(map(str, [*row, int(t)])) for row, t in zip(X, y, strict=True))
    )
    assert invoke("fit", "--data", table, "--n-anomalies", "3", "--output", tmp_path / "m", *FAST).exit_code == 0
    before = table.read_bytes()
    result = invoke("score", "--model", tmp_path / "m", "--data", table, "--output", table)
    assert result.exit_code == 2 and "is the input data itself" in result.output
    assert table.read_bytes() == before
    result = invoke("score", "--model", tmp_path / "m", "--data", table, "--output", tmp_path / "m" / "config.json")
    assert result.exit_code == 2 and "is a file of the model" in result.output


def test_score_skips_bad_images_with_the_flag_its_hint_names(mvtec_tree, tmp_path):
    out = tmp_path / "m"
    result = invoke("fit", "--data", mvtec_tree, "--n-anomalies", "2", "--output", out, *SMALL_RESNET, *FAST)
    assert result.exit_code == 0, result.output
    (mvtec_tree / "test" / "dent" / "broken.png").write_bytes(b"\x89PNG not really")
    result = invoke("score", "--model", out, "--data", mvtec_tree, "--output", tmp_path / "s.csv")
    assert result.exit_code == 1 and "pass --skip-bad-images" in result.output
    result = invoke("score", "--model", out, "--data", mvtec_tree, "--output", tmp_path / "s.csv", "--skip-bad-images")
    assert result.exit_code == 0, result.output
    assert "skipped test/dent/broken.png" in result.output
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 8 + 6 + 6


def test_compare_takes_skip_bad_images_and_fails_when_every_cell_is_skipped(mvtec_tree, tmp_path):
    (mvtec_tree / "test" / "dent" / "broken.png").write_bytes(b"\x89PNG not really")
    args = [
        "compare",
        "--data",
        mvtec_tree,
        "--models",
        "devnet",
        "--seeds",
        "1",
        "--n-anomalies",
        "50",
        "--no-plots",
        "-q",
    ]
    result = invoke(*args, "--output", tmp_path / "a")
    assert result.exit_code == 1 and "pass --skip-bad-images" in result.output
    (mvtec_tree / "test" / "dent" / "extra.webp").write_bytes(b"RIFF....WEBP")
    result = invoke(*args, "--skip-bad-images", "--output", tmp_path / "b")
    assert "skipped test/dent/broken.png" in result.output
    assert "skipped test/dent/extra.webp: extension '.webp' is not read" in result.output
    assert result.exit_code == 1 and "every one of the 5 cells was skipped" in result.output
    rerun = invoke(*args, "--skip-bad-images", "--output", tmp_path / "b")  # resumed: still nothing computed
    assert rerun.exit_code == 1 and "every one of the 5 cells was skipped" in rerun.output


def test_compare_on_data_without_anomalies_exits_non_zero(blobs, tmp_path):
    X, y, _, _ = blobs
    np.savez(tmp_path / "normals.npz", X=X[y == 0], y=np.zeros(int((y == 0).sum()), int))
    result = invoke(
        "compare",
        "--data",
        tmp_path / "normals.npz",
        "--models",
        "devnet",
        "--seeds",
        "1",
        "--no-plots",
        "-q",
        "--output",
        tmp_path / "out",
    )
    assert result.exit_code == 1 and "has no anomalies" in result.output and "cells was skipped" in result.output
