"""A compare's ``index.html`` leads with the answer, and its figures are readable and not clipped.

The figures are checked where they are drawn (matplotlib's own extents of everything drawn, against the figure's
edges) and as saved (a clipped title leaves ink on the PNG's border); the page in real headless Chromium at
1,300 px: the verdict table fully on the first screen and above the first plot, nothing wider than the page.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ahl_plugins.evaluation.compare import CompareConfig, run_compare

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "maps"))
from fakes import FakeRunner, synthetic_dataset  # noqa: E402

WIDTH, HEIGHT = 1300, 1000
HEADER_GREY = (242, 242, 242)  # the table headers' background (#f2f2f2)


def outside_the_figure(fig) -> list[str]:
    """Every drawn text that extends past ``fig``'s edges, and the extent of all that is drawn if it does."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # runs the constrained layout as savefig did
    renderer = canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    # tick labels are judged through the tight box below: only the ticks in view are drawn
    ticks = {
        id(label)
        for ax in fig.axes
        for axis in (ax.xaxis, ax.yaxis)
        for tick in axis.get_major_ticks() + axis.get_minor_ticks()
        for label in (tick.label1, tick.label2)
    }
    found = []
    for text in fig.findobj(Text):
        hidden = text.axes is not None and not text.axes.get_visible()
        if id(text) in ticks or hidden or not (text.get_visible() and text.get_text().strip()):
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
            found.append(f"{text.get_text()!r} at x {box.x0:.0f}..{box.x1:.0f}, y {box.y0:.0f}..{box.y1:.0f}")
    tight = fig.get_tightbbox(renderer)  # inches: every drawn artist, tick labels included
    size = fig.get_size_inches()
    if tight.x0 < -0.01 or tight.y0 < -0.01 or tight.x1 > size[0] + 0.01 or tight.y1 > size[1] + 0.01:
        found.append(f"drawn extent {tight.bounds} past the figure's {tuple(size)} inches")
    return found


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A compare of two models in both settings, the hard one with one seen type as in ``ahl demo`` (the narrowest
    gain plot), every figure checked as it is saved."""
    from matplotlib.figure import Figure

    out = tmp_path_factory.mktemp("page")
    config = CompareConfig(
        data="synthetic",
        models=["devnet", "dra"],
        settings=["general", "hard"],
        anomaly_types=["alpha"],
        n_anomalies=[5],
        seeds=3,
        progress=False,
    )
    clipped: dict[str, list[str]] = {}
    save = Figure.savefig

    def checked_save(fig, path, *args, **kwargs):
        save(fig, path, *args, **kwargs)
        clipped[Path(path).name] = outside_the_figure(fig)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", checked_save)
        result = run_compare(config, out, runner=FakeRunner(), dataset=synthetic_dataset())
    return out, result, clipped


def test_the_check_sees_a_title_wider_than_its_figure():
    from ahl_plugins.evaluation.figures import figure, wrapped

    title = "Paired gain of AHL over its base model, hard setting, M = 10 (mean ± std over seeds)"
    fig = figure(5.0, 3.0)
    fig.subplots().set_title(title, fontsize=10)
    assert outside_the_figure(fig)  # the layout cannot shrink a title: the old gain plot's defect
    fig = figure(5.0, 3.0)
    fig.subplots().set_title(wrapped(title, 5.0, 10), fontsize=10)
    assert outside_the_figure(fig) == []


def test_no_figure_draws_past_its_edges(page):
    out, result, clipped = page
    names = {p.name for p in result.plots}
    assert {"gain_hard_M5.png", "forest_auc_roc.png", "roc_devnet_hard_M5.png", "sge_weights_dra.png"} <= names
    assert set(clipped) >= names
    assert {name: found for name, found in clipped.items() if found} == {}
    for path in result.plots:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        assert (border == 255).all(), f"{path.name}: ink on the image's border (something is cut off)"


def test_the_page_leads_with_what_was_compared_and_the_verdicts(page):
    out, _, _ = page
    html = (out / "index.html").read_text()
    answer, plots = html.index('<div id="answer"'), html.index('<div id="plots"')
    assert answer < html.index("Arguments: data=synthetic") < html.index("Paired gains: intervals and verdicts") < plots
    assert html.index("<th>verdict</th>") < html.index("AUC-ROC, general setting, M = 5") < plots
    assert plots < html.index("AUC-PR, general setting, M = 5") and plots < html.index("Times per cell")
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images[:2] == ["plots/forest_auc_roc.png", "plots/forest_auc_pr.png"]
    assert html.index(images[0]) > plots


def test_a_1300_px_screenshot_shows_the_verdict_table_above_the_first_plot(page, tmp_path):
    from browser import chromium, page_layout

    browser = chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); the browser check needs a real browser")
    out, _, _ = page
    shot = tmp_path / "index_1300.png"
    layout = page_layout(out / "index.html", browser, shot, WIDTH, HEIGHT)
    table, first_plot = layout["verdict_table"], layout["first_plot"]
    assert table is not None and first_plot is not None, layout
    assert table["bottom"] <= first_plot["top"] and table["bottom"] <= HEIGHT  # all of it on the first screen
    assert layout["page_width"] <= WIDTH  # no table or figure wider than the page
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    inside = pixels[int(table["top"]) : int(table["bottom"]), int(table["left"]) : int(table["right"])]
    assert (inside == HEADER_GREY).all(axis=-1).sum() > 2000  # the screenshot shows the table where the DOM puts it
    for image in layout["images"]:
        assert image["shown"] >= min(image["natural"], 1200) - 1, image  # drawn at their own size, not shrunk
        if "forest" in image["src"]:
            assert image["shown"] >= 0.6 * WIDTH, image  # the verdicts' plot spans the page
