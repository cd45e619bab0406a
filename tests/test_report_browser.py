"""The report in a real browser: headless Chromium loads the page from a local HTTP
server (and the standalone file from disk) and the test fails on any console
error, uncaught exception, failed request, JavaScript dialog or image that did not
load. Screenshots go to test-artifacts/report-browser/.

Chromium is Debian's (no browser download), driven by Playwright, which reports
console messages (CSP violations among them), page errors, failed requests and
dialogs as events.

The results tree is test_report.make_results with hostile strings planted in class
names, file names, URLs, captions and run ids, so this also checks that nothing
injected runs (an injected script would raise a dialog or a console error, and the
page's Content-Security-Policy would log a violation).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest
from test_report import EVIL, OPTIONS, _config, make_results

from conftest import REPO
from convscope.layout import Results
from convscope.report.render import render_report

ARTIFACTS = REPO / "test-artifacts" / "report-browser"
CHROMIUM = shutil.which("chromium")
REPORT_PAGE = Results(".").report_page.as_posix()  # the page's URL path under a served results folder
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]
playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (Debian: apt-get install -y chromium; .ci/run installs it when run as root)",
)


class Browser:
    """One headless Chromium page; every problem it reports since the last load is kept."""

    def __init__(self):
        self._pw = playwright.sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        self.page = self._browser.new_page(viewport={"width": 1280, "height": 1600})
        self.events: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.events.append(f"exception: {e}"))
        self.page.on("requestfailed", lambda r: self.events.append(f"request failed: {r.failure} ({r.url[:80]})"))
        self.page.on("response", self._response)
        self.page.on("dialog", self._dialog)

    def _console(self, msg) -> None:
        if msg.type in ("error", "assert", "warning"):
            self.events.append(f"console.{msg.type}: {msg.text}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.events.append(f"HTTP {response.status} for {response.url}")

    def _dialog(self, dialog) -> None:
        self.events.append(f"dialog opened: {dialog.message!r}")
        dialog.dismiss()

    def load(self, url: str) -> None:
        self.events.clear()
        self.page.goto(url, wait_until="load")
        # Let late events (e.g. the broken-image check on load) arrive.
        self.page.wait_for_timeout(300)

    def evaluate(self, expression: str):
        return self.page.evaluate(expression)

    def problems(self) -> list[str]:
        """Every console error, exception, failed request or dialog since the last load."""
        return list(self.events)

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: Path):
    """An HTTP server on 127.0.0.1 with `directory` as its root; yields the base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory))
    )
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
    out = render_report(R, Results(R).report_dir, options, True, config=_config(classes, **options))
    with serve(R) as base:
        yield base, out


@pytest.fixture(scope="module")
def browser():
    b = Browser()
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
    browser.load(f"{base}/{REPORT_PAGE}")
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
