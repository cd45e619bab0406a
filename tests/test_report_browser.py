"""The report in a real browser: headless Chromium loads the page from a local HTTP
server (and the standalone file from disk) and the test fails on any console
error, uncaught exception, failed request, JavaScript dialog or image that did not
load. Screenshots go to test-artifacts/report-browser/.

Chromium is driven over the DevTools protocol (a websocket, via websocket-client):
that reports console messages, network failures and CSP violations as structured
events, where scraping --enable-logging output would depend on log formats.

The results tree is test_report.make_results with hostile strings planted in class
names, file names, URLs, captions and run ids, so this also checks that nothing
injected runs (an injected script would raise a dialog or a console error, and the
page's Content-Security-Policy would log a violation).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO
from test_report import EVIL, OPTIONS, _config, make_results
from convscope.report.render import render_report

ARTIFACTS = REPO / "test-artifacts" / "report-browser"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--window-size=1280,1600",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = find_chromium()
websocket = pytest.importorskip("websocket", reason="websocket-client is in the test extra: pip install -e '.[test]'")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (Debian: apt-get install -y chromium; .ci/run installs it when run as root)",
)


class Browser:
    """One headless Chromium and one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path):
        self.proc = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: the wrapper script and its children
        )
        self.stderr: list[str] = []
        endpoint = self._wait_for_devtools(timeout=60)
        port = re.match(r"ws://[^:]+:(\d+)/", endpoint).group(1)
        pages = self._targets(port)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def _wait_for_devtools(self, timeout: float) -> str:
        found = {}

        def read():
            for line in self.proc.stderr:
                self.stderr.append(line)
                m = re.search(r"DevTools listening on (ws://\S+)", line)
                if m:
                    found["url"] = m.group(1)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while "url" not in found:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError("chromium did not start its DevTools endpoint:\n" + "".join(self.stderr[-30:]))
            time.sleep(0.05)
        return found["url"]

    @staticmethod
    def _targets(port: str) -> list[dict]:
        for _ in range(100):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages
            time.sleep(0.1)
        raise AssertionError("chromium has no page target")

    def call(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mine:
                if "error" in msg:
                    raise AssertionError(f"{method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise AssertionError(f"no answer to {method} within {timeout} s")

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if e["method"] == method:
                    self.events.remove(e)
                    return e
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
        raise AssertionError(f"no {method} within {timeout} s")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def load(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")
        # Let late events (e.g. the broken-image check on load) arrive.
        self.evaluate("new Promise(r => setTimeout(r, 300))")

    def problems(self) -> list[str]:
        """Every console error, exception, failed request or dialog since the last load."""
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')} {p['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p.get('args', [])]}")
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['level']} ({p['entry'].get('source')}): {p['entry']['text']} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed":
                out.append(f"request failed: {p.get('errorText')} (blocked: {p.get('blockedReason')})")
            elif m == "Network.responseReceived" and p["response"]["status"] >= 400:
                out.append(f"HTTP {p['response']['status']} for {p['response']['url']}")
            elif m == "Page.javascriptDialogOpening":
                out.append(f"dialog opened: {p.get('message')!r}")
        return out

    def screenshot(self, path: Path) -> None:
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 12000), "scale": 1}
        shot = self.call("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        path.parent.mkdir(parents=True, exist_ok=True)
        import base64

        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """An HTTP server on 127.0.0.1 with `directory` as its root; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The report of a hostile results tree, served from 127.0.0.1 (the results folder is the web root)."""
    root = tmp_path_factory.mktemp("browser")
    classes = ["circle", f"sq{EVIL}", "triangle"]
    R = make_results(root / "results", classes=classes, evil=EVIL)
    options = {**OPTIONS, "title": f"Browser {EVIL}"}
    out = render_report(R, R / "report", options, True, config=_config(["circle", "square"], **options), classes=classes)
    with serve(R) as base:
        yield base, out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


IMAGES = """Array.from(document.images).map(i => ({src: i.getAttribute('src').slice(0, 60),
    complete: i.complete, width: i.naturalWidth}))"""


def assert_page_ok(browser, expect_images: int | None = None):
    """No console error, exception, failed request or dialog; every image loaded."""
    problems = browser.problems()
    assert not problems, "the page logged problems:\n" + "\n".join(problems)
    images = browser.evaluate(IMAGES)
    assert images and (expect_images is None or len(images) == expect_images)
    broken = [i for i in images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"{len(broken)} of {len(images)} images did not load: {broken[:5]}"
    assert browser.evaluate("document.getElementById('broken-images').hidden") is True
    # The page's own script is the only one: nothing injected became an element.
    assert browser.evaluate("document.scripts.length") == 1


def _check_page(browser, expect_images: int):
    assert_page_ok(browser, expect_images)
    assert EVIL in browser.evaluate("document.title")


def test_index_in_browser(site, browser):
    base, out = site
    browser.load(f"{base}/report/index.html")
    # 9 thumbnails; curves, gradcam, deletion per backbone (2); heatmap and strategies
    _check_page(browser, expect_images=9 + 3 * 2 + 2)
    # The sortable runs table sorts by a numeric column, both ways, in a real browser.
    sort = """(() => {
        const t = document.getElementById('runs');
        const col = Array.from(t.tHead.rows[0].cells).findIndex(th => th.textContent.trim() === 'val_accuracy');
        const th = t.tHead.rows[0].cells[col];
        const values = () => Array.from(t.tBodies[0].rows).map(r => Number(r.cells[col].dataset.sort));
        th.click(); const up = values();
        th.click(); const down = values();
        return {up, down, aria: th.getAttribute('aria-sort')};
    })()"""
    result = browser.evaluate(sort)
    assert result["up"] == sorted(result["up"]) and result["down"] == sorted(result["up"], reverse=True)
    assert result["aria"] == "descending" and len(set(result["up"])) > 1
    # Navigation: every side link targets a section, and one is highlighted.
    nav = browser.evaluate("""Array.from(document.querySelectorAll('#toc li a')).map(a =>
        [a.getAttribute('href'), !!document.getElementById(a.getAttribute('href').slice(1))])""")
    assert len(nav) >= 7 and all(ok for _, ok in nav), nav
    assert browser.evaluate("document.querySelectorAll('#toc a.current').length") == 1
    browser.screenshot(ARTIFACTS / "index.png")
    assert (ARTIFACTS / "index.png").stat().st_size > 10_000
    assert not browser.problems()


def test_standalone_from_disk_in_browser(site, browser):
    """The mailed file, opened from disk, with no assets folder beside it."""
    _, out = site
    lonely = out["standalone"].parent.parent / "mailed" / "report.html"
    lonely.parent.mkdir(exist_ok=True)
    shutil.copyfile(out["standalone"], lonely)
    browser.load(lonely.as_uri())
    _check_page(browser, expect_images=9 + 3 * 2 + 2)
    browser.screenshot(ARTIFACTS / "standalone.png")


def test_missing_assets_are_reported_on_the_page(site, browser, tmp_path):
    """index.html moved without its assets/: the page says so (and the browser check catches it)."""
    _, out = site
    moved = tmp_path / "index.html"
    shutil.copyfile(out["html"], moved)
    browser.load(moved.as_uri())
    assert browser.problems(), "missing images went unnoticed by the browser check"
    assert browser.evaluate("document.getElementById('broken-images').hidden") is False
    assert "did not load" in browser.evaluate("document.getElementById('broken-images').textContent")
