"""Open a page in real headless Chromium: which of its images failed to load, and where its parts lie."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HARNESS = "/__image_check__.html"
# Same origin as the page (both served over http), so the harness can read the frame's images
# once the frame has fired load, which waits for every image.
HARNESS_PAGE = """<!DOCTYPE html><html><body>
<iframe id="page" src="/{page}" style="width:1400px;height:900px"></iframe><pre id="out">PENDING</pre>
<script>
const frame = document.getElementById("page");
function report() {{
  const images = Array.from(frame.contentDocument.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  document.getElementById("out").textContent = "RESULT " + JSON.stringify({{images: images.length, broken: broken}});
}}
frame.addEventListener("load", report);
</script></body></html>"""


LAYOUT = "/__layout_check__.html"
# The page in a frame exactly ``width`` px wide; once every image has loaded, the harness reports where the verdict
# table, the first plot and every image lie (CSS px from the page's top) and whether the page is wider than the frame.
LAYOUT_PAGE = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="page" src="/{page}" style="width:{width}px;height:{height}px;border:0"></iframe><pre id="out">PENDING</pre>
<script>
const frame = document.getElementById("page");
function box(e) {{ if (!e) return null; const r = e.getBoundingClientRect();
  return {{top: r.top, bottom: r.bottom, left: r.left, right: r.right}}; }}
function report() {{
  const doc = frame.contentDocument;
  const verdict = Array.from(doc.querySelectorAll("table")).find(
    t => Array.from(t.querySelectorAll("th")).some(h => h.textContent.trim() === "verdict"));
  const images = Array.from(doc.images).map(i => ({{src: i.getAttribute("src"), natural: i.naturalWidth,
    shown: i.getBoundingClientRect().width, box: box(i)}}));
  document.getElementById("out").textContent = "RESULT " + JSON.stringify({{
    verdict_table: box(verdict), first_plot: images.length ? images[0].box : null, images: images,
    page_width: doc.documentElement.scrollWidth}});
}}
frame.addEventListener("load", report);
</script></body></html>"""


def chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class _Handler(http.server.SimpleHTTPRequestHandler):
    page = "index.html"
    width = 1300
    height = 1000

    def do_GET(self) -> None:
        if self.path in (HARNESS, LAYOUT):
            template = HARNESS_PAGE if self.path == HARNESS else LAYOUT_PAGE
            body = template.format(page=self.page, width=self.width, height=self.height).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(page: Path, width: int = 1300, height: int = 1000) -> Iterator[str]:
    """Serve ``page``'s folder over http on a free local port; yields the base URL."""
    attributes = {"page": page.name, "width": width, "height": height}
    handler = functools.partial(type("Handler", (_Handler,), attributes), directory=str(page.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _run(browser: str, *arguments: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--virtual-time-budget=30000",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _result(completed: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    found = re.search(r"RESULT (\{.*?\})</pre>", completed.stdout)
    if found is None:
        raise AssertionError(f"the harness did not report (exit {completed.returncode}): {completed.stderr[-2000:]}")
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def broken_images(page: Path, browser: str, timeout: float = 120.0) -> tuple[int, list[str]]:
    """(number of <img> on ``page``, the src of every one that did not load) as Chromium sees it."""
    with serve(page) as url:
        result = _result(_run(browser, "--dump-dom", url + HARNESS, timeout=timeout))
    return int(result["images"]), list(result["broken"])


def page_layout(page: Path, browser: str, screenshot: Path, width: int = 1300, height: int = 1000) -> dict[str, Any]:
    """Where the verdict table, the first plot and every image lie on ``page`` at ``width`` CSS px (one device
    pixel each), and a ``width`` × ``height`` screenshot of its first screen at ``screenshot``."""
    with serve(page, width, height) as url:
        result = _result(_run(browser, "--dump-dom", url + LAYOUT, timeout=120.0))
        shot = _run(
            browser,
            f"--window-size={width},{height}",
            f"--screenshot={screenshot}",
            f"{url}/{page.name}",
            timeout=120.0,
        )
    if not screenshot.is_file():
        raise AssertionError(f"Chromium wrote no screenshot (exit {shot.returncode}): {shot.stderr[-2000:]}")
    return result
