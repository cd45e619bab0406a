"""A crawl without network names the network as the cause and lists every failed request.

No internet is needed or used: the hosts are a closed port on 127.0.0.1 and a name
under .invalid (RFC 6761: never resolves).
"""

from __future__ import annotations

import socket

import pytest
from test_crawl import ledger_rows, options, url_file

from convscope import layout
from convscope.data.crawl import CrawlError, crawl_class
from convscope.layout import Results


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def crawl_fails(tmp_path, **class_options) -> tuple[str, list[dict]]:
    out = Results(tmp_path).raw("cat")
    out.mkdir(parents=True)
    opts = options(
        tmp_path,
        "cat",
        crawl={"timeout_s": 20, "retries": 1},
        max_images=5,
        **class_options,
    )
    with pytest.raises(CrawlError) as err:
        crawl_class("cat", opts, out, out / layout.CRAWL_SUMMARY)
    assert not (out / layout.CRAWL_SUMMARY).exists()
    return str(err.value), ledger_rows(out)


@pytest.mark.parametrize(
    "host, cause",
    [
        ("nonexistent.invalid", "name not resolved"),
        ("127.0.0.1:{closed_port}", "connection refused"),
    ],
    ids=["unresolvable-name", "refused-port"],  # stable ids: pytest-xdist workers must collect the same tests
)
def test_greedy_without_network_names_the_network(tmp_path, host, cause):
    host = host.format(closed_port=closed_port())
    message, rows = crawl_fails(tmp_path, source="greedy", site=f"http://{host}/gallery")
    assert "gave no usable image because the network failed" in message
    assert f"for a network reason ({cause}" in message and host in message
    assert "machine with internet access" in message and "classes.cat.source to 'folder'" in message
    assert f"{tmp_path / 'raw' / 'cat' / 'manifest.csv'} (status 'failed')" in message
    # The pointer leads somewhere: the failed page request is in the ledger.
    pages = [r for r in rows if r["detail"].startswith("page request failed")]
    assert pages and all(r["status"] == "failed" and host in r["url_or_path"] for r in pages)
    assert "1 page request(s) and 0 image download(s) failed" in message


def test_urllist_without_network_counts_the_downloads(tmp_path):
    urls = [f"http://nonexistent.invalid/{i}.jpg" for i in range(4)]
    message, rows = crawl_fails(tmp_path, source="urllist", urls=url_file(tmp_path, urls))
    assert "0 page request(s) and 4 image download(s) failed, 4 of them for a network reason" in message
    assert "name not resolved 4×" in message
    assert sorted(r["url_or_path"] for r in rows) == sorted(urls)


def test_a_site_that_answers_is_not_blamed_on_the_network(tmp_path):
    from test_crawl import Site

    site = Site()
    try:
        message, _ = crawl_fails(
            tmp_path,
            source="urllist",
            urls=url_file(tmp_path, [f"{site.base}/missing.jpg"]),
        )
    finally:
        site.close()
    assert "network failed" not in message and "classes.cat.urls" in message


def test_crawl_summary_counts_failed_page_requests(tmp_path):
    from test_crawl import Site, image_bytes

    site = Site()
    site.add("/ok.jpg", image_bytes(1))
    try:
        listing = url_file(tmp_path, [f"{site.base}/ok.jpg", "http://nonexistent.invalid/a.jpg"])
        out = Results(tmp_path).raw("cat")
        summary = crawl_class(
            "cat",
            options(tmp_path, "cat", source="urllist", urls=listing, max_images=5),
            out,
            out / layout.CRAWL_SUMMARY,
        )
    finally:
        site.close()
    assert summary["failed_requests"] == {"pages": 0, "images": 1, "network": 1}


def test_a_page_that_loads_on_its_retry_leaves_no_failed_row(tmp_path):
    import threading
    import time

    from test_crawl import SLOW_S, Site, image_bytes

    site = Site()
    page = f'<html><body><img src="{site.base}/gallery/1.jpg"></body></html>'.encode()
    site.add("/gallery/1.jpg", image_bytes(1))
    site.add("/gallery", page, "text/html", delay=SLOW_S)  # the first try times out (request_timeout_s 0.8)

    def answer_fast_after_first_hit():
        while not site.hits["/gallery"]:
            time.sleep(0.01)
        site.add("/gallery", page, "text/html")

    threading.Thread(target=answer_fast_after_first_hit, daemon=True).start()
    out = Results(tmp_path).raw("cat")
    try:
        summary = crawl_class(
            "cat",
            options(tmp_path, "cat", source="greedy", site=f"{site.base}/gallery", max_images=1),
            out,
            out / layout.CRAWL_SUMMARY,
        )
    finally:
        site.close()
    assert site.hits["/gallery"] >= 2 and summary["counts"]["new"] == 1
    assert [r["url_or_path"] for r in ledger_rows(out) if r["status"] == "failed"] == []
