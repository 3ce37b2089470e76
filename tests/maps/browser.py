"""Open a page in real headless Chromium and report which of its images failed to load."""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from pathlib import Path

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


def chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class _Handler(http.server.SimpleHTTPRequestHandler):
    page = "index.html"

    def do_GET(self) -> None:
        if self.path == HARNESS:
            body = HARNESS_PAGE.format(page=self.page).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


def broken_images(page: Path, browser: str, timeout: float = 120.0) -> tuple[int, list[str]]:
    """(number of <img> on ``page``, the src of every one that did not load) as Chromium sees it."""
    handler = functools.partial(type("Handler", (_Handler,), {"page": page.name}), directory=str(page.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{HARNESS}"
        completed = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=30000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    found = re.search(r"RESULT (\{.*?\})</pre>", completed.stdout)
    if found is None:
        raise AssertionError(f"the harness did not report (exit {completed.returncode}): {completed.stderr[-2000:]}")
    result = json.loads(found.group(1).replace("&quot;", '"'))
    return int(result["images"]), list(result["broken"])
