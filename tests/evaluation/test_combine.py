"""`ahl report` over three small compare directories: gains across data sets, Wilcoxon, ranks, CD diagram, page."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from ahl_plugins.errors import AHLError, ReportInputError
from ahl_plugins.evaluation.combine import combine
from ahl_plugins.evaluation.compare import CompareConfig, run_compare

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "maps"))
from fakes import FakeRunner, synthetic_dataset  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _compare(out: Path, seed: int, models=("devnet", "dra")) -> Path:
    dataset = dataclasses.replace(synthetic_dataset(seed=seed), name=f"syn{seed}")
    config = CompareConfig(
        data=dataset.name, models=list(models), settings=["general"], n_anomalies=[5], seeds=3, progress=False
    )
    run_compare(config, out, runner=FakeRunner(), dataset=dataset, plots=False)
    return out


@pytest.fixture(scope="module")
def compares(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    return root, [_compare(root / f"c{i}", i) for i in range(3)]


@pytest.fixture(scope="module")
def reported(compares):
    from ahl_plugins.cli.report import report

    root, dirs = compares
    out = root / "out"
    result = CliRunner().invoke(report, [*map(str, dirs), "--output", str(out)])
    assert result.exit_code == 0, result.output
    return out, dirs, result.output


def test_report_writes_gains_wilcoxon_ranks_and_pictures(reported):
    out, dirs, printed = reported
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "ahl-plugins/report" and summary["metric"] == "auc_roc"
    assert len(summary["rows"]) == 3
    pair = next(p for p in summary["pairs"] if (p["model"], p["variant"]) == ("devnet", "ahl"))
    # the mean over data sets is the mean of each compare's paired gain, tested with Wilcoxon over them
    per_set = []
    for d in dirs:
        compare = json.loads((d / "summary.json").read_text())
        gain = next(g for g in compare["gains"] if (g["model"], g["variant"]) == ("devnet", "ahl"))
        per_set.append(gain["auc_roc"]["mean"])
    assert pair["over_rows"]["mean"] == pytest.approx(np.mean(per_set))
    assert pair["over_rows"]["ci_low"] < pair["over_rows"]["mean"] < pair["over_rows"]["ci_high"]
    assert pair["wilcoxon"]["p"] == pytest.approx(stats.wilcoxon(per_set).pvalue)
    assert pair["wins"] + pair["ties"] + pair["losses"] == 3
    assert [r["verdict"] for r in pair["by_row"]].count("no detectable effect") == pair["ties"]
    ranks = summary["ranks"]
    assert sorted(ranks["methods"]) == sorted(["k-NN", "devnet", "AHL(devnet)", "dra", "AHL(dra)"])
    assert sum(ranks["average_ranks"].values()) == pytest.approx(15.0)  # 1 + ... + 5 on every row
    assert ranks["critical_difference"] == pytest.approx(2.728 * np.sqrt(5 * 6 / 18), rel=1e-3)
    assert 0 <= ranks["friedman"]["p"] <= 1
    for name in ("cd_auc_roc.png", "forest_auc_roc.png"):
        data = (out / "plots" / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000
    md = (out / "summary.md").read_text()
    assert "Wilcoxon p" in md and "Nemenyi critical difference" in md and "### AHL(dra) − dra" in md
    assert "AHL(devnet) − devnet:" in printed and "average ranks:" in printed


def test_report_index_shows_plots_and_links_each_compare(reported):
    out, dirs, _ = reported
    page = (out / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert images[0] == "plots/cd_auc_roc.png" or "plots/cd_auc_roc.png" in images
    assert all((out / src).is_file() for src in images)
    links = re.findall(r'<a href="([^"]+)"', page)
    for d in dirs:
        assert any((out / link).resolve() == (d / "index.html").resolve() for link in links), d
    assert "<table>" in page and "Wilcoxon p" in page


def test_report_page_loads_in_headless_chromium(reported):
    from browser import broken_images, chromium

    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser check needs a real browser")
    out, _, _ = reported
    count, broken = broken_images(out / "index.html", browser)
    assert count == 2 and broken == []


def test_not_a_compare_directory_is_refused_with_how_to_fix(tmp_path, compares):
    _, dirs = compares
    stray = tmp_path / "stray"
    stray.mkdir()
    with pytest.raises(ReportInputError, match=r"stray is not an `ahl compare` output.*ahl compare --output"):
        combine([dirs[0], stray])
    with pytest.raises(ReportInputError, match="is not a directory"):
        combine([tmp_path / "missing"])
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "compare.json").write_text((dirs[0] / "compare.json").read_text())
    with pytest.raises(ReportInputError, match="never finished; run the same `ahl compare` command again"):
        combine([unfinished])
    assert issubclass(ReportInputError, AHLError)


def test_compares_without_a_common_model_are_refused(tmp_path):
    a = _compare(tmp_path / "a", 0, models=("devnet",))
    b = _compare(tmp_path / "b", 1, models=("dra",))
    with pytest.raises(ReportInputError, match=r"no model in common .*devnet.*dra.*same --models"):
        combine([a, b])


def test_the_cli_reports_bad_input_as_one_line(tmp_path):
    from ahl_plugins.cli.report import report

    result = CliRunner().invoke(report, [str(tmp_path), "--output", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "is not an `ahl compare` output" in result.output and "Traceback" not in result.output
