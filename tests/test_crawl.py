"""Crawl stage against a real HTTP server on 127.0.0.1, through the real icrawler crawlers.

The server (started per test, threaded) serves images and pages the test generates:
good JPEGs/PNGs, a 404, a response slower than request_timeout_s, an HTML page
served as image/jpeg, a truncated JPEG, an image below min_side, and the same bytes
under two URLs. Crawls go through crawl_class with options built by convscope.config
from a validated config, as the crawl rule gets them.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import struct
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from icrawler.builtin import (
    BaiduImageCrawler,
    BaiduParser,
    BingImageCrawler,
    BingParser,
    FlickrImageCrawler,
    GoogleImageCrawler,
    GoogleParser,
)
from icrawler.builtin.baidu import BaiduFeeder
from icrawler.builtin.bing import BingFeeder
from icrawler.builtin.google import GoogleFeeder
from PIL import Image

from conftest import tiny_config
from convscope import config as cfg
from convscope import layout
from convscope.data import engines
from convscope.data.crawl import CrawlError, crawl_class
from convscope.data.folder_import import FolderError
from convscope.data.ledger import COLUMNS, Ledger
from convscope.data.sniff import sniff
from convscope.layout import Results

SLOW_S = 2.0  # the slow response; request_timeout_s in these tests is 0.8


# ---- a real web server -------------------------------------------------------


class Site:
    """Routes path -> (status, content type, body, delay); every request is counted."""

    def __init__(self):
        self.routes: dict[str, tuple[int, str, bytes, float]] = {}
        self.hits: Counter = Counter()
        self.endless = False  # /endless/N.html links to N+1 forever, no images
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, body: bytes, ctype: str = "image/jpeg", status: int = 200, delay: float = 0.0) -> str:
        self.routes[path] = (status, ctype, body, delay)
        return self.base + path

    def _handler(self):
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0]
                site.hits[path] += 1
                if site.endless and path.startswith("/endless"):
                    n = int(path.removeprefix("/endless").strip("/").split(".")[0] or 0)
                    route = (200, "text/html", f'<a href="/endless/{n + 1}.html">next</a>'.encode(), 0.0)
                else:
                    route = site.routes.get(path, (404, "text/plain", b"not found", 0.0))
                status, ctype, body, delay = route
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the slow response): expected

            def log_message(self, *args):
                pass

        return Handler

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    s = Site()
    yield s
    s.close()


def image_bytes(n: int, fmt: str = "JPEG", side: int = 48) -> bytes:
    """A distinct small image (colour from n)."""
    img = Image.new("RGB", (side, side), ((n * 53) % 256, (n * 97) % 256, (n * 151) % 256))
    img.putpixel((n % side, (n // side) % side), (255 - (n * 53) % 256, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=90)
    return buf.getvalue()


def truncated_jpeg() -> bytes:
    noise = Image.frombytes("RGB", (64, 64), hashlib.sha256(b"seed").digest() * 384)
    buf = io.BytesIO()
    noise.save(buf, format="JPEG", quality=95)  # noisy: the scan data is most of the file
    data = buf.getvalue()
    cut = data[: len(data) * 2 // 3]
    Image.open(io.BytesIO(cut))  # header still readable: icrawler (and our gate) keep it
    return cut


HTML = b"<html><body><h1>Not an image</h1></body></html>"


def options(tmp_path: Path, cls: str = "cat", crawl: dict | None = None, **class_options) -> dict:
    """crawl_params of `cls` from a validated config, as the crawl rule passes them."""
    config = tiny_config(("circle",))
    config["classes"] = {cls: class_options, "circle": {}}
    config["crawl"].update(
        dict(timeout_s=20, retries=1, request_timeout_s=0.8, threads=2, min_side=16), **(crawl or {})
    )
    cfg.load_and_validate(config)
    return cfg.crawl_params(config, cls)


def url_file(tmp_path: Path, urls: list[str]) -> str:
    path = tmp_path / "urls.txt"
    path.write_text("# one URL per line\n\n" + "\n".join(urls) + "\n")
    return str(path)


def ledger_rows(folder: Path) -> list[dict]:
    with open(folder / layout.LEDGER, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        return list(reader)


def image_files(folder: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name not in (layout.LEDGER, layout.CRAWL_SUMMARY)
    }


def check_ledger_matches_disk(folder: Path) -> list[dict]:
    """Every ok row's file exists with its sha256; every file has one ok row; no key or sha twice."""
    rows = ledger_rows(folder)
    files = image_files(folder)
    ok = [r for r in rows if r["status"] == "ok"]
    assert sorted(r["file"] for r in ok) == sorted(files)
    for r in ok:
        assert hashlib.sha256(files[r["file"]]).hexdigest() == r["sha256"]
    keys = [r["url_or_path"] for r in rows]
    assert len(keys) == len(set(keys)), "a URL or path appears twice in the ledger"
    shas = [r["sha256"] for r in rows if r["sha256"]]
    assert len(shas) == len(set(shas)), "the same bytes are stored twice"
    return rows


# ---- urllist -------------------------------------------------------------------


def test_urllist_ledger_maps_every_url_to_its_file_or_reason(tmp_path, site):
    good = {f"/img/{i}.jpg": image_bytes(i) for i in range(4)}
    good["/img/4.png"] = image_bytes(4, "PNG")
    urls = [site.add(p, b, "image/png" if p.endswith(".png") else "image/jpeg") for p, b in good.items()]
    missing = site.base + "/img/missing.jpg"  # 404
    slow = site.add("/img/slow.jpg", image_bytes(50), delay=SLOW_S)
    html = site.add("/img/page.jpg", HTML, "image/jpeg")
    truncated = site.add("/img/truncated.jpg", truncated_jpeg())
    tiny = site.add("/img/tiny.jpg", image_bytes(60, side=8))
    dup = site.add("/img/copy.jpg", good["/img/0.jpg"])
    listed = urls + [missing, slow, html, truncated, tiny, dup]
    opts = options(tmp_path, source="urllist", urls=url_file(tmp_path, listed + [urls[0]]), max_images=50)
    out = Results(tmp_path).raw("cat")
    out.mkdir(parents=True)

    t0 = time.monotonic()
    summary = crawl_class("cat", opts, out, out / layout.CRAWL_SUMMARY)
    elapsed = time.monotonic() - t0

    rows = check_ledger_matches_disk(out)
    by_url = {r["url_or_path"]: r for r in rows}
    assert set(by_url) == set(listed)  # every URL once, the repeated line too
    files = image_files(out)
    for url, path in zip(urls, good):  # URL -> file map is right: the file holds that URL's bytes
        row = by_url[url]
        assert row["source"] == "urllist"
        if row["status"] == "ok":
            assert files[row["file"]] == good[path]
    # the same bytes at two URLs: one file, the other row says duplicate and names it
    pair = [by_url[urls[0]], by_url[dup]]
    assert sorted(r["status"] for r in pair) == ["duplicate", "ok"]
    kept = next(r for r in pair if r["status"] == "ok")
    assert next(r for r in pair if r["status"] == "duplicate")["detail"] == f"same bytes as {kept['file']}"
    assert by_url[missing]["status"] == "failed" and "HTTP 404" in by_url[missing]["detail"]
    assert by_url[slow]["status"] == "failed" and "request_timeout_s=0.8" in by_url[slow]["detail"]
    assert "2 attempts" in by_url[slow]["detail"]  # retries=1
    assert by_url[html]["status"] == "rejected" and "not an image" in by_url[html]["detail"]
    assert by_url[truncated]["status"] == "ok"  # kept here; clean quarantines it after a full decode
    assert files[by_url[truncated]["file"]] == site.routes["/img/truncated.jpg"][2]
    assert by_url[tiny]["status"] == "rejected" and "smaller than min_side 16" in by_url[tiny]["detail"]
    assert sorted(Path(f).suffix for f in files) == [".jpg"] * 5 + [".png"]  # ext from the bytes
    assert all(len(Path(f).stem) == 6 and Path(f).stem.isdigit() for f in files)
    assert site.hits["/img/slow.jpg"] == 2 and site.hits["/img/missing.jpg"] == 1  # 404 is not retried

    assert summary["counts"] == dict(existing=0, new=6, failed=2, rejected=2, duplicate=1, missing=0, total=6)
    assert summary["stopped"] == "exhausted" and summary["class"] == "cat" and summary["source"] == "urllist"
    assert json.loads((out / layout.CRAWL_SUMMARY).read_text()) == summary
    assert elapsed < 8, f"urllist crawl of 11 URLs took {elapsed:.1f} s"
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temp files left for clean to see


def test_rerun_with_larger_max_images_adds_only_new_files(tmp_path, site):
    urls = [site.add(f"/img/{i}.jpg", image_bytes(i)) for i in range(7)]
    urls.insert(2, site.base + "/img/gone.jpg")  # 404, retried on each run
    listing = url_file(tmp_path, urls)
    out = Results(tmp_path).raw("cat")
    out.mkdir(parents=True)

    first = crawl_class(
        "cat", options(tmp_path, source="urllist", urls=listing, max_images=3), out, out / layout.CRAWL_SUMMARY
    )
    assert first["counts"]["new"] == 3 and first["stopped"] == "target"
    before = {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in out.glob("0*")}
    assert len(before) == 3
    fetched = {u for u in urls if site.hits[u.removeprefix(site.base)]}
    stored = {r["url_or_path"] for r in ledger_rows(out) if r["status"] == "ok"}
    time.sleep(0.05)  # a rewrite would show in mtime_ns

    opts = options(tmp_path, source="urllist", urls=listing, max_images=6)
    second = crawl_class("cat", opts, out, out / layout.CRAWL_SUMMARY)
    rows = check_ledger_matches_disk(out)
    after = {p.name: (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest()) for p in out.glob("0*")}
    assert len(after) == 6
    for name, stamp in before.items():
        assert after[name] == stamp, f"{name} was rewritten"
    assert second["counts"]["existing"] == 3 and second["counts"]["new"] == 3 and second["stopped"] == "target"
    for url in stored:  # stored URLs are never fetched again
        assert site.hits[url.removeprefix(site.base)] == 1
    gone = [r for r in rows if r["url_or_path"].endswith("/gone.jpg")]
    assert len(gone) == 1 and gone[0]["status"] == "failed"  # retried, still one row
    assert fetched  # (the first run did fetch)

    third = crawl_class(
        "cat", options(tmp_path, source="urllist", urls=listing, max_images=6), out, out / layout.CRAWL_SUMMARY
    )
    assert third["counts"]["new"] == 0 and third["counts"]["total"] == 6
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("0*")} == {k: v[0] for k, v in after.items()}


def test_no_usable_image_fails_naming_class_and_source(tmp_path, site):
    html = site.add("/a.jpg", HTML, "image/jpeg")
    listing = url_file(tmp_path, [site.base + "/nothing.jpg", html])
    out = Results(tmp_path).raw("dog")
    out.mkdir(parents=True)
    with pytest.raises(CrawlError) as err:
        crawl_class("dog", options(tmp_path, "dog", source="urllist", urls=listing, max_images=5), out, out / "c.json")
    msg = str(err.value)
    assert "class 'dog'" in msg and "source 'urllist'" in msg and "classes.dog.urls" in msg
    assert "1 failed, 1 rejected" in msg and str(out / layout.LEDGER) in msg
    assert not (out / "c.json").exists()
    assert {r["status"] for r in ledger_rows(out)} == {"failed", "rejected"}  # the reasons are kept


# ---- greedy -----------------------------------------------------------------


def test_greedy_site_with_fewer_images_than_asked_ends_early(tmp_path, site):
    imgs = {f"/site/img/{i}.jpg": image_bytes(100 + i) for i in range(5)}
    for path, body in imgs.items():
        site.add(path, body)
    b = site.base
    site.add("/site/slow.jpg", image_bytes(200), delay=SLOW_S)
    site.add("/site/fake.jpg", HTML, "image/jpeg")
    site.add("/site/cut.jpg", truncated_jpeg())
    index = f"""<html><body>
      <img src="{b}/site/img/0.jpg">                 <!-- absolute -->
      <img src="/site/img/1.jpg">                    <!-- root-relative: icrawler alone misses it -->
      <a href="{b}/site/img/2.jpg">full size</a>
      <img src="{b}/site/slow.jpg"><img src="{b}/site/fake.jpg"><img src="{b}/site/missing.jpg">
      <a href="{b}/site/page2.html">more</a>
    </body></html>"""
    page2 = f"""<html><body>
      <img src="img/3.jpg">                          <!-- relative to the page -->
      <a href="/site/img/4.jpg">x</a><img src="{b}/site/cut.jpg">
      <a href="{b}/site/">home</a>
    </body></html>"""
    site.add("/site", index.encode(), "text/html")
    site.add("/site/", index.encode(), "text/html")
    site.add("/site/page2.html", page2.encode(), "text/html")
    opts = options(tmp_path, source="greedy", site=f"{b}/site", max_images=40, crawl={"timeout_s": 30})
    out = Results(tmp_path).raw("cat")
    out.mkdir(parents=True)

    t0 = time.monotonic()
    summary = crawl_class("cat", opts, out, out / layout.CRAWL_SUMMARY)
    elapsed = time.monotonic() - t0

    assert elapsed < 10, f"greedy crawl of a 6-image site took {elapsed:.1f} s (timeout_s is 30)"
    assert summary["stopped"] == "exhausted"
    rows = check_ledger_matches_disk(out)
    by_url = {r["url_or_path"]: r for r in rows}
    stored = sorted(image_files(out).values())
    assert stored == sorted([*imgs.values(), site.routes["/site/cut.jpg"][2]])
    assert by_url[f"{b}/site/slow.jpg"]["status"] == "failed"
    assert by_url[f"{b}/site/fake.jpg"]["status"] == "rejected"
    assert by_url[f"{b}/site/missing.jpg"]["status"] == "failed"
    assert {r["source"] for r in rows} == {"greedy"}


def test_greedy_endless_site_stops_at_timeout(tmp_path, site):
    site.endless = True
    opts = options(tmp_path, source="greedy", site=f"{site.base}/endless", max_images=5, crawl={"timeout_s": 2})
    out = Results(tmp_path).raw("cat")
    out.mkdir(parents=True)
    t0 = time.monotonic()
    with pytest.raises(CrawlError) as err:
        crawl_class("cat", opts, out, out / layout.CRAWL_SUMMARY)
    elapsed = time.monotonic() - t0
    assert 2 <= elapsed < 2 + engines.STOP_GRACE_S + 2.5
    assert sum(site.hits.values()) > 3  # it really was crawling pages until the deadline
    msg = str(err.value)
    assert "class 'cat'" in msg and "source 'greedy'" in msg and "crawl.timeout_s" in msg


# ---- folder -----------------------------------------------------------------


def test_folder_import_copies_and_keeps_source_paths(tmp_path):
    src = tmp_path / "kaggle" / "cats"
    (src / "batch2").mkdir(parents=True)
    (src / ".cache").mkdir()
    originals = {
        src / "a.jpg": image_bytes(1),
        src / "b.PNG": image_bytes(2, "PNG"),
        src / "batch2" / "c.jpeg": image_bytes(3),
        src / "batch2" / "c_copy.jpg": image_bytes(3),
        src / "notes.txt": b"downloaded from kaggle",
        src / ".DS_Store": b"\0\0",
        src / ".cache" / "x.jpg": image_bytes(4),
    }
    for path, data in originals.items():
        path.write_bytes(data)
    out = Results(tmp_path).raw("cats")
    out.mkdir(parents=True)
    summary = crawl_class(
        "cats",
        options(tmp_path, "cats", source="folder", path=str(src), max_images=10),
        out,
        out / layout.CRAWL_SUMMARY,
    )

    rows = check_ledger_matches_disk(out)
    by_path = {r["url_or_path"]: r for r in rows}
    assert set(by_path) == {str(p.resolve()) for p in originals if ".DS_Store" not in str(p) and ".cache" not in str(p)}
    files = image_files(out)
    for path in (src / "a.jpg", src / "b.PNG", src / "batch2" / "c.jpeg"):
        row = by_path[str(path.resolve())]
        assert row["status"] == "ok" and row["source"] == "folder" and files[row["file"]] == originals[path]
    assert by_path[str((src / "batch2" / "c_copy.jpg").resolve())]["status"] == "duplicate"
    assert by_path[str((src / "notes.txt").resolve())]["status"] == "rejected"
    assert summary["counts"]["new"] == 3 and summary["counts"]["total"] == 3
    assert all(p.read_bytes() == d for p, d in originals.items())  # sources untouched

    (src / "d.jpg").write_bytes(image_bytes(5))
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("0*")}
    again = crawl_class(
        "cats",
        options(tmp_path, "cats", source="folder", path=str(src), max_images=10),
        out,
        out / layout.CRAWL_SUMMARY,
    )
    assert again["counts"] == dict(existing=3, new=1, failed=0, rejected=0, duplicate=0, missing=0, total=4)
    assert {n: t for n, t in ((p.name, p.stat().st_mtime_ns) for p in out.glob("0*")) if n in before} == before
    check_ledger_matches_disk(out)


def test_folder_import_respects_max_images_and_names_a_missing_folder(tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.jpg").write_bytes(image_bytes(i))
    out = Results(tmp_path).raw("x")
    opts = options(tmp_path, "x", source="folder", path=str(src), max_images=2)
    summary = crawl_class("x", opts, out, out / "c.json")
    assert summary["counts"]["total"] == 2 and len(image_files(out)) == 3  # 2 images + c.json
    gone = tmp_path / "gone"
    gone.mkdir()  # validation checks the folder exists (tests/test_config.py); here it goes before the crawl
    opts = options(tmp_path, "y", source="folder", path=str(gone), max_images=2)
    gone.rmdir()
    with pytest.raises(FolderError, match=r"class 'y'.*classes\.y\.path"):
        crawl_class("y", opts, Results(tmp_path).raw("y"), Results(tmp_path).crawl_summary("y"))


# ---- the byte gate -------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the pixel data is a 1x1 image's)."""
    data = bytearray(image_bytes(1, "PNG", side=1))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "empty file"),
        (HTML, "not an image Pillow can identify"),
        (png_claiming(40000, 40000), "decompression-bomb guard"),
        (image_bytes(1, side=20), "20x20 is smaller than min_side 32"),
        (image_bytes(1, "PNG", side=40), ""),
        (truncated_jpeg(), ""),
    ],
)
def test_sniff_gate(data, expected):
    kind = sniff(data, min_side=32)
    assert kind.error.startswith(expected) if expected else kind.error == ""
    if not expected:
        assert kind.ext in ("png", "jpg")


# ---- ledger -----------------------------------------------------------------


def test_ledger_adopts_unlisted_files_and_never_overwrites(tmp_path):
    folder = tmp_path / "cls"
    folder.mkdir()
    (folder / "000007.jpg").write_bytes(image_bytes(7))  # copied in by hand
    (folder / ".convscope-tmp-dead").write_bytes(b"half")  # left by a killed run
    ledger = Ledger(folder, "cls")
    assert not (folder / ".convscope-tmp-dead").exists()
    assert ledger.ok_count == 1 and ledger.rows()[0]["source"] == "unknown"
    stored = ledger.store("urllist", "http://x/a.jpg", image_bytes(8), "jpg", name="000007.jpg")
    assert stored.file == "000008.jpg"  # the wanted name is taken: next free number
    assert (folder / "000007.jpg").read_bytes() == image_bytes(7)
    assert ledger.store("urllist", "http://x/b.jpg", image_bytes(7), "jpg").status == "duplicate"
    (folder / "000008.jpg").unlink()  # someone deleted a raw file
    ledger.close()
    again = Ledger(folder, "cls")
    statuses = {r["url_or_path"]: r["status"] for r in again.rows()}
    assert statuses == {"": "ok", "http://x/a.jpg": "missing", "http://x/b.jpg": "duplicate"}
    assert again.is_final("http://x/a.jpg")  # not fetched again


# ---- search engines: wiring only (no network) --------------------------------


@pytest.mark.parametrize(
    "source, crawler_cls, feeder_cls, parser_cls",
    [
        ("bing", BingImageCrawler, BingFeeder, BingParser),
        ("baidu", BaiduImageCrawler, BaiduFeeder, BaiduParser),
        ("google", GoogleImageCrawler, GoogleFeeder, GoogleParser),
    ],
)
def test_search_engine_wiring(tmp_path, source, crawler_cls, feeder_cls, parser_cls):
    opts = options(
        tmp_path,
        source=source,
        keywords=["tabby cat", "kitten"],
        max_images=30,
        crawl={"threads": 3, "min_side": 80, "request_timeout_s": 7, "retries": 2},
    )
    specs = engines.engine_specs("cat", opts, want=30, seen=10)
    assert [s.crawler_cls for s in specs] == [crawler_cls, crawler_cls]
    assert [s.feeder_kwargs["keyword"] for s in specs] == ["tabby cat", "kitten"]
    spec = specs[0]
    assert spec.feeder_kwargs["max_num"] == 70 and spec.feeder_kwargs["offset"] == 0  # pages past the 10 seen
    assert spec.parser_kwargs == dict(queue_timeout=engines.QUEUE_TIMEOUT_S, req_timeout=7, max_retry=3)
    assert spec.downloader_kwargs["min_size"] == (80, 80) and spec.downloader_kwargs["max_num"] == 30
    assert spec.init_kwargs["downloader_threads"] == 3

    ledger = Ledger(Results(tmp_path).raw("cat"), "cat")
    intake = engines.Intake("cat", source, ledger, 30, opts)
    crawler = engines.build(spec, intake)  # constructing a crawler starts no thread, no request
    assert type(crawler) is crawler_cls
    assert type(crawler.feeder) is feeder_cls and type(crawler.parser) is parser_cls
    assert isinstance(crawler.downloader, engines.LedgerDownloader) and crawler.downloader.intake is intake
    assert crawler.downloader.thread_num == 3
    # The arguments fit what each pool's thread function accepts in icrawler 0.6.10.
    inspect.signature(crawler.feeder.feed).bind(**spec.feeder_kwargs)
    inspect.signature(crawler.parser.worker_exec).bind(**spec.parser_kwargs)
    bound = inspect.signature(crawler.downloader.worker_exec).bind(**spec.downloader_kwargs)
    extra = bound.arguments.get("kwargs", {})  # what worker_exec passes on to download()
    inspect.signature(crawler.downloader.download).bind({"file_url": "u"}, "jpg", 5, **extra)
    assert extra == {"min_size": (80, 80), "max_size": None}
    assert not any(t.is_alive() for t in crawler.downloader.workers + crawler.feeder.workers)


def test_search_result_paging_is_capped_at_the_engine_limit(tmp_path):
    opts = options(tmp_path, source="bing", max_images=900)
    (spec,) = engines.engine_specs("cat", opts, want=900, seen=0)
    assert spec.feeder_kwargs["max_num"] == engines.SEARCH_LIMIT
    assert spec.feeder_kwargs["keyword"] == "cat"  # keywords default to the class name


def test_flickr_needs_its_key_from_the_named_environment_variable(tmp_path, monkeypatch):
    opts = options(tmp_path, source="flickr", crawl={"flickr_api_key_env": "CONVSCOPE_TEST_FLICKR"})
    monkeypatch.delenv("CONVSCOPE_TEST_FLICKR", raising=False)
    out = Results(tmp_path).raw("cat")
    with pytest.raises(engines.EngineError, match=r"class 'cat'.*CONVSCOPE_TEST_FLICKR.*export CONVSCOPE_TEST_FLICKR"):
        crawl_class("cat", opts, out, out / layout.CRAWL_SUMMARY)
    monkeypatch.setenv("CONVSCOPE_TEST_FLICKR", "k3y")
    (spec,) = engines.engine_specs("cat", opts, want=5)
    assert spec.crawler_cls is FlickrImageCrawler
    assert spec.init_kwargs["apikey"] == "k3y" and spec.feeder_kwargs["apikey"] == "k3y"
    assert spec.feeder_kwargs["text"] == "cat" and spec.parser_kwargs["size_preference"] == engines.FLICKR_SIZES
    crawler = engines.build(spec, engines.Intake("cat", "flickr", Ledger(out, "cat"), 5, opts))
    assert crawler.apikey == "k3y"
    inspect.signature(crawler.feeder.feed).bind(**spec.feeder_kwargs)
    inspect.signature(crawler.parser.parse).bind(
        None, **{k: v for k, v in spec.parser_kwargs.items() if k in ("apikey", "size_preference")}
    )
