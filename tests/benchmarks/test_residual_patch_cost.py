"""benchmarks.residual_patch_cost: the page's ratios (best run to best run, per-seed pairs) and its verdicts."""

from __future__ import annotations

import json

import torch

from benchmarks import residual_patch_cost


def _row(label: str, model: str, seed: int, fit: float, score: float, auc: float = 0.9) -> dict:
    return {
        "label": label,
        "model": model,
        "seed": seed,
        "fit": {"cpu": fit, "wall": 2 * fit},
        "score": {"cpu": score, "wall": 2 * score},
        "n_test": 100,
        "auc_roc": auc,
        "peak_rss_mib": 1000.0,
    }


def _page(tmp_path, rows: list[dict]) -> str:
    results = tmp_path / "results"
    results.mkdir()
    (results / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    page = tmp_path / "page.md"
    threads = torch.get_num_threads()
    try:  # main sets the page's thread count; the test session keeps its own
        residual_patch_cost.main(["--report-only", "--results", str(results), "--page", str(page)])
    finally:
        torch.set_num_threads(threads)
    return page.read_text()


def test_ratios_take_each_models_best_run_and_say_whether_the_targets_are_met(tmp_path):
    rows = [
        _row("after", "dra_pooled", 0, 20.0, 0.1),
        _row("after", "dra_pooled", 1, 40.0, 0.1),  # a disturbed run: the best run is the reference
        _row("after", "residual_patch", 0, 50.0, 2.0),
        _row("after", "residual_patch", 1, 48.0, 2.0),
        _row("after", "patchcore", 0, 30.0, 1.0),
        _row("after", "patchcore", 1, 30.0, 1.0),
        _row("before", "dra_pooled", 0, 20.0, 0.1),
        _row("before", "residual_patch", 0, 90.0, 5.0),  # run twice: the later row counts
        _row("before", "residual_patch", 0, 80.0, 5.0),
    ]
    text = _page(tmp_path, rows)
    assert "| after | residual_patch | 48.0 / 49.0 (98) |" in text
    assert "- *after*: fit 2.40x DRA pooled's" in text and "target at most 3: met" in text
    assert "throughput 0.50x PatchCore-class's" in text  # 50 vs 100 images / s: exactly the target
    assert "- *before*: fit 4.00x DRA pooled's" in text and "missed by 1.00" in text
    assert "throughput 0.20x" in text and "missed by 0.30" in text
    assert "*before* = *after* to every digit on 1 of 1 seeds" in text


def test_a_moved_auroc_is_reported(tmp_path):
    rows = [
        _row("after", "dra_pooled", 0, 20.0, 0.1),
        _row("after", "residual_patch", 0, 50.0, 2.0, auc=0.91),
        _row("after", "patchcore", 0, 30.0, 1.0),
        _row("before", "residual_patch", 0, 80.0, 5.0, auc=0.92),
    ]
    assert "on 0 of 1 seeds" in _page(tmp_path, rows)
