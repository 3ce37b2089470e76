"""The results page's image section joins labelled cells and label-free rows per seed and compares the strongest."""

from __future__ import annotations

import csv
import json

import pytest

from benchmarks.compare_catalogue import Part
from benchmarks.results_glance import Run
from benchmarks.results_references import (
    ahl_gain_lines,
    image_references_section,
    labelled_cells,
    reference_cells,
    strongest_label_free,
)

COLUMNS = ["model", "variant", "setting", "n_anomalies", "seen_type", "seed", "status", "auc_roc"]


def _run(tmp_path, name, cells, created=None):
    directory = tmp_path / name
    directory.mkdir()
    if created:
        (directory / "compare.json").write_text(json.dumps({"created": created}))
    with (directory / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for model, variant, setting, seen, seed, auc in cells:
            writer.writerow(dict(zip(COLUMNS, [model, variant, setting, 10, seen, seed, "ok", auc], strict=True)))
    return Run(Part(name, name, None, ["general", "hard"], [10]), directory, {})


def _references(tmp_path, rows):
    folder = tmp_path / "reference_rows"
    folder.mkdir()
    (folder / "main.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_hard_seeds_need_every_seen_type_and_the_best_row_meets_the_strongest_form(tmp_path):
    cells = [("dra", "base", "general", "all", s, 0.80 + 0.01 * s) for s in range(3)]
    cells += [("dra", "ahl", "general", "all", s, 0.70) for s in range(3)]
    cells += [("dra", "base", "hard", t, s, v) for s in range(2) for t, v in (("a", 0.6), ("b", 0.8))]
    cells += [("dra", "base", "hard", "a", 2, 0.9)]  # seed 2 lacks type b: not a hard seed yet
    cells += [("knn", "knn", "general", "all", 0, 0.5)]  # a reference cell of the compare run is not a labelled row
    runs = [_run(tmp_path, "elpv", cells)]
    rows = [
        {"data": "elpv", "setting": "general", "seen_type": "all", "seed": s, "form": f, "auc_roc": v + 0.001 * s}
        for s in range(3)
        for f, v in (("knn-kth", 0.70), ("knn-mean", 0.75), ("patchcore", 0.90))
    ]
    folder = _references(tmp_path, rows)

    labelled = labelled_cells(runs)
    assert labelled[("elpv", "hard")]["dra/base"] == {0: pytest.approx(0.7), 1: pytest.approx(0.7)}
    assert "knn/knn" not in labelled[("elpv", "general")]
    assert set(reference_cells(folder)[("elpv", "general")]) == {"knn-kth", "knn-mean", "patchcore"}
    assert strongest_label_free(runs, folder)[("elpv", "general")] == ("PatchCore-class", pytest.approx(0.901))

    section = "\n".join(image_references_section(runs, folder, runs_dir=None, residual_rows=None))
    # DRA (0.81 mean) beats AHL(DRA); minus PatchCore per seed: -0.1, -0.091, -0.082
    assert "DRA − PatchCore-class: -0.091" in section and "| below |" in section
    assert "| ELPV | hard |" not in section  # no reference rows for the hard setting: no row


def test_no_reference_rows_no_section(tmp_path):
    runs = [_run(tmp_path, "mt_general", [("dra", "base", "general", "all", 0, 0.8)])]
    assert image_references_section(runs, tmp_path / "absent", runs_dir=None, residual_rows=None) == []


def test_pixel_section_pairs_each_model_with_the_patch_reference_per_seed(tmp_path):
    from benchmarks.results_references import pixel_reference_section

    rows = [
        {
            "data": "mt",
            "setting": "general",
            "seen_type": "all",
            "seed": s,
            "form": "patchcore",
            "auc_roc": 0.95,
            "pixel_auroc": 0.85,
            "pixel_aupro": 0.75,
        }
        for s in range(3)
    ]
    rows += [{"data": "elpv", "setting": "general", "seen_type": "all", "seed": 0, "form": "patchcore", "auc_roc": 0.9}]
    folder = _references(tmp_path, rows)
    models = {"dra": {s: {"image_auroc": 0.9, "pixel_auroc": 0.80 + 0.01 * s, "pixel_aupro": 0.7} for s in range(3)}}
    text = "\n".join(pixel_reference_section(models, folder))
    assert "| ELPV | general | PatchCore-class | 1 | 0.900 ± 0.000 |  |  |" in text  # no masks: no pixel cells
    assert (
        "| dra | -0.050 [-0.050, -0.050] below | -0.040 [-0.065, -0.015] below | -0.050 [-0.050, -0.050] below |"
        in text
    )


def test_a_patch_head_run_joins_as_its_own_rows(tmp_path):
    runs = [_run(tmp_path, "mt_general", [("dra", "base", "general", "all", s, 0.80) for s in range(2)])]
    patch_dir = tmp_path / "runs"
    patch_dir.mkdir()
    _run(
        patch_dir,
        "mt_general_dra_patch-s5-e10",
        [("dra", v, "general", "all", s, 0.9) for v in ("base", "ahl") for s in range(2)],
    )
    cells = labelled_cells(runs, patch_dir)[("mt", "general")]
    assert cells["dra/base"] == {0: 0.8, 1: 0.8} and cells["dra_patch/ahl"] == {0: 0.9, 1: 0.9}


def test_a_run_under_the_patch_default_fills_the_patch_rows_first(tmp_path):
    cells = [("dra", v, "general", "all", s, 0.95) for v in ("base", "ahl") for s in range(2)]
    runs = [_run(tmp_path, "mt_general", cells, created="2026-12-07T01:00:00+0000")]
    patch_dir = tmp_path / "runs"
    patch_dir.mkdir()
    _run(patch_dir, "mt_general_dra_patch-s5-e10", [("dra", "base", "general", "all", s, 0.9) for s in range(2)])
    found = labelled_cells(runs, patch_dir)[("mt", "general")]
    # no pooled DRA row is left from a run under today's defaults, and the older patch run does not overwrite it
    assert set(found) == {"dra_patch/base", "dra_patch/ahl"} and found["dra_patch/base"] == {0: 0.95, 1: 0.95}


def test_the_residual_patch_rows_join_under_todays_image_score(tmp_path):
    folder = tmp_path / "residual_patch_test"
    folder.mkdir()
    labels = [0, 0, 1, 1]
    rows = [
        {
            "data": "mt",
            "setting": setting,
            "seen_type": seen,
            "seed": seed,
            "auc_roc": 0.0,  # the form it ran with: recomputed from the heads below
            "test_labels": labels,
            # the floor alone ranks perfectly; the learned heads stay below the offset, so they add nothing
            "heads": {"floor": [0.1, 0.2, 0.8, 0.9], "evidence": [0.0] * 4, "statistics": [0.0] * 4},
            "head_center": [0.0, 0.0],
            "head_scale": [1.0, 1.0],
        }
        for setting, seen, seed in [("general", "all", 0), ("hard", "a", 0), ("hard", "b", 0), ("hard", "a", 1)]
    ]
    (folder / "main.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = labelled_cells([], None, folder)
    assert found[("mt", "general")]["residual_patch/base"] == {0: 1.0}
    assert found[("mt", "hard")]["residual_patch/base"] == {0: 1.0}  # seed 1 lacks type b: not a hard seed yet


def test_ahl_on_the_residual_patch_model_joins_as_a_row_and_reports_its_paired_gain(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    run = _run(
        runs_dir,
        "mt_general_residual_patch-s5-e10",
        [
            ("residual_patch", v, "general", "all", s, 0.9 + 0.01 * (v == "ahl"))
            for v in ("base", "ahl")
            for s in range(3)
        ],
        created="2026-12-07T08:00:00+0000",
    )
    gain = {"mean": 0.01, "ci_low": 0.004, "ci_high": 0.016, "verdict": "helps", "n": 3}
    other = {**gain, "ci_low": None}  # a gain without an interval (one seed) is not a row
    (run.directory / "summary.json").write_text(
        json.dumps(
            {
                "gains": [
                    {
                        "model": "residual_patch",
                        "variant": "ahl",
                        "setting": "general",
                        "n_anomalies": 10,
                        "seen_type": "all",
                        "auc_roc": gain,
                    },
                    {
                        "model": "residual_patch",
                        "variant": "ahl",
                        "setting": "general",
                        "n_anomalies": 1,
                        "seen_type": "all",
                        "auc_roc": other,
                    },
                ]
            }
        )
    )
    found = labelled_cells([], runs_dir)[("mt", "general")]
    assert found == {"residual_patch/ahl": {0: pytest.approx(0.91), 1: pytest.approx(0.91), 2: pytest.approx(0.91)}}
    lines = ahl_gain_lines(runs_dir)
    rows = [line for line in lines if line.startswith("| Magnetic Tile")]
    assert rows == [
        "| Magnetic Tile | general | 10 | +0.010 [+0.004, +0.016] | helps (n 3) | 0 of 3 | "
        "`mt_general_residual_patch-s5-e10` |"
    ]
    assert ahl_gain_lines(tmp_path / "nothing") == []
    # a run from before the floor became the reference's draw: marked in the gain table, no column beside the new base
    (run.directory / "compare.json").write_text(json.dumps({"created": "2026-12-07T06:16:17+0000"}))
    assert "residual_patch/ahl" not in labelled_cells([], runs_dir)[("mt", "general")]
    assert [line for line in ahl_gain_lines(runs_dir) if line.startswith("| Magnetic Tile")][0].endswith(
        "`mt_general_residual_patch-s5-e10` ‡ |"
    )
