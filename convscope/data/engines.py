"""icrawler wiring for the web sources (bing, baidu, google, flickr, greedy, urllist).

`engine_specs` says which icrawler crawler class and which feeder / parser /
downloader arguments a class's options mean (no network; the tests check it).
`crawl_web` runs them one at a time, bounded:

- Downloads go through `LedgerDownloader`, which replaces icrawler's download():
  it fetches with our request timeout and retry policy, gates the bytes
  (convscope.data.sniff), and stores them through the class ledger, which gives
  the URL -> file map icrawler lacks and never overwrites or duplicates.
- Each crawler runs in a thread. The calling thread stops it (icrawler's shared
  `reach_max_num` signal, which every feeder, parser and downloader thread polls)
  when the target is reached, at the wall-clock deadline (crawl.timeout_s), or when
  the crawl has gone idle: no request in flight and empty queues for IDLE_S. The
  idle rule is what ends a greedy crawl of a site with fewer images than asked
  (icrawler's GreedyFeeder waits for `reach_max_num` forever, issue #133).
  After the stop nothing more is written, even by a request still in flight.
- The whole crawler is driven through icrawler's base Crawler.crawl with explicit
  arguments, so page fetches also use our timeout and retry count (the engines'
  own crawl() methods fix them at 5 s / 3 tries and some reject min_size).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import requests
from bs4 import BeautifulSoup
from icrawler import Crawler, ImageDownloader
from icrawler.builtin import (
    BaiduImageCrawler,
    BingImageCrawler,
    FlickrImageCrawler,
    GoogleImageCrawler,
    GreedyImageCrawler,
    UrlListCrawler,
)
from icrawler.builtin.greedy import GreedyParser
from icrawler.storage import BaseStorage

from convscope.data import network
from convscope.data.ledger import FAILED, OK, REJECTED, Ledger
from convscope.data.sniff import sniff

log = logging.getLogger(__name__)

WEB_SOURCES = ("bing", "baidu", "google", "flickr", "greedy", "urllist")
SEARCH_LIMIT = 1000  # bing, baidu and google serve at most the first 1000 results
IDLE_S = 1.5  # nothing in flight and nothing queued for this long: the crawl is done
QUEUE_TIMEOUT_S = 0.5  # how often icrawler's threads look up from an empty queue
STOP_GRACE_S = 2.0  # how long a stopped crawler may take to wind down before we move on
_POLL_S = 0.05
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Flickr sizes, best first: "large" (1024 px) is plenty for training and far
# lighter than "original", which is often tens of megabytes.
FLICKR_SIZES = ["large", "medium 800", "large 1600", "medium 640", "large 2048", "original", "medium"]
# icrawler's own component loggers chat at INFO (every poll of an empty queue);
# we log progress ourselves and keep only their warnings and errors.
_ICRAWLER_LOGGERS = ("feeder", "parser", "downloader", "icrawler.crawler")


class EngineError(RuntimeError):
    """A web source that cannot run as configured (missing key, unreadable URL list...)."""


@dataclass
class EngineSpec:
    """One icrawler run: the crawler class and what its three thread pools get."""

    label: str
    crawler_cls: type
    init_kwargs: dict
    feeder_kwargs: dict
    parser_kwargs: dict = field(default_factory=dict)
    downloader_kwargs: dict = field(default_factory=dict)


class _NoStorage(BaseStorage):
    """icrawler's storage is bypassed: LedgerDownloader writes through the ledger."""

    def write(self, id, data):
        raise AssertionError("icrawler storage is not used; files go through the ledger")

    def exists(self, id):
        return False

    def max_file_idx(self):
        return 0


class RelativeGreedyParser(GreedyParser):
    """icrawler's GreedyParser follows only absolute <img src>; resolve relative ones too."""

    def parse(self, response, domains):
        yield from super().parse(response, domains)
        soup = BeautifulSoup(response.content.decode("utf-8", "ignore"), "lxml")
        for tag in soup.find_all("img", src=True):
            src = tag["src"].strip()
            if re.match(self.pattern, src):
                continue  # absolute: the base class yielded it
            url = urljoin(response.url, src)
            if re.match(self.pattern, url):
                yield dict(file_url=url)


def read_url_list(cls: str, path: str) -> list[str]:
    """One URL per line; blank lines and lines starting with # are skipped; repeats dropped."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise EngineError(
            f"class {cls!r}: source 'urllist' file {str(p)!r} does not exist "
            f"(config key classes.{cls}.urls); give a text file with one image URL per line"
        )
    urls = [line.strip() for line in p.read_text(encoding="utf-8", errors="replace").splitlines()]
    return list(dict.fromkeys(u for u in urls if u and not u.startswith("#")))


def flickr_key(cls: str, options: dict) -> str:
    var = options["flickr_api_key_env"]
    key = os.environ.get(var, "").strip()
    if not key:
        raise EngineError(
            f"class {cls!r}: source 'flickr' needs a Flickr API key in the environment variable {var}, "
            f"which is not set. Run `export {var}=<your key>` (get one at "
            "https://www.flickr.com/services/api/keys/) or choose another source; "
            "config key crawl.flickr_api_key_env names the variable (never put the key in config)."
        )
    return key


def engine_specs(
    cls: str, options: dict, want: int, *, seen: int = 0, skip: Callable[[str], bool] | None = None
) -> list[EngineSpec]:
    """The icrawler runs for one class: one per keyword for search engines, else one.

    `want` is how many new images are needed, `seen` how many URLs the ledger
    already has (search results start again from the top, so the feeder must page
    past them); `skip(url)` drops list URLs the ledger has settled already.
    """
    source = options["source"]
    if source not in WEB_SOURCES:
        raise ValueError(f"{source!r} is not a web source; web sources: {list(WEB_SOURCES)}")
    m = options["min_side"]
    init = dict(feeder_threads=1, parser_threads=1, downloader_threads=options["threads"])
    parser = dict(
        queue_timeout=QUEUE_TIMEOUT_S, req_timeout=options["request_timeout_s"], max_retry=options["retries"] + 1
    )
    # min_size travels as a downloader argument (worker_exec passes it on to download()).
    downloader = dict(max_num=want, queue_timeout=QUEUE_TIMEOUT_S, max_idle_time=None, min_size=(m, m), max_size=None)
    feed = min(SEARCH_LIMIT, seen + 2 * want)  # results to page through: skip seen ones, spare for failures

    def spec(label, crawler_cls, feeder, extra_init=None, extra_parser=None):
        return EngineSpec(
            label,
            crawler_cls,
            {**init, **(extra_init or {})},
            feeder,
            {**parser, **(extra_parser or {})},
            dict(downloader),
        )

    if source in ("bing", "baidu", "google", "flickr"):
        return _search_specs(cls, options, feed, spec)
    if source == "greedy":
        sites = options["site"] if isinstance(options["site"], list) else [options["site"]]
        # As GreedyImageCrawler.crawl normalises them: the same strings are the domain filter.
        domains = [(s if s.startswith("http") else "http://" + s).rstrip("/") for s in sites]
        return [
            spec(
                f"greedy {domains}",
                GreedyImageCrawler,
                {"domains": domains},
                extra_init={"parser_cls": RelativeGreedyParser},
                extra_parser={"domains": domains},
            )
        ]
    urls = read_url_list(cls, options["urls"])
    todo = [u for u in urls if not (skip and skip(u))]
    if len(todo) < len(urls):
        log.info(
            "class %s: %d of %d listed URLs are settled in the ledger already", cls, len(urls) - len(todo), len(urls)
        )
    if not todo:
        return []
    return [spec(f"urllist {options['urls']}", UrlListCrawler, {"url_list": todo})]


def _search_specs(cls: str, options: dict, feed: int, spec: Callable) -> list[EngineSpec]:
    """One run per keyword of a search engine; `feed`: results to page through; `spec` makes an EngineSpec."""
    source = options["source"]
    if source == "flickr":
        key = flickr_key(cls, options)
        return [
            spec(
                f"flickr {kw!r}",
                FlickrImageCrawler,
                dict(apikey=key, max_num=feed, text=kw, sort="relevance"),
                extra_init={"apikey": key},
                extra_parser={"apikey": key, "size_preference": FLICKR_SIZES},
            )
            for kw in options["keywords"]
        ]
    crawler_cls = {"bing": BingImageCrawler, "baidu": BaiduImageCrawler, "google": GoogleImageCrawler}[source]
    extra = {"language": None} if source == "google" else {}
    return [
        spec(f"{source} {kw!r}", crawler_cls, dict(keyword=kw, offset=0, max_num=feed, filters=None, **extra))
        for kw in options["keywords"]
    ]


class Intake:
    """One crawler run's link to the ledger: fetch, gate, store, count, and stop."""

    def __init__(self, cls: str, source: str, ledger: Ledger, want: int, options: dict):
        self.cls, self.source, self.ledger, self.want = cls, source, ledger, want
        self.goal = ledger.ok_count + want
        self.request_timeout_s = options["request_timeout_s"]
        self.attempts = options["retries"] + 1
        self.new = 0
        self.reached = False
        self.stopped = threading.Event()
        self._lock = threading.Lock()  # a store and the stop never interleave
        self._activity = threading.Lock()
        self.active = 0  # fetches and HTTP requests in progress
        self.last_change = time.monotonic()
        self._crawler: Crawler | None = None
        self._local = threading.local()  # .image: this thread is fetching an image, not a page
        self._page_tries: Counter = Counter()

    # -- activity, for the idle rule
    def _touch(self, delta: int) -> None:
        with self._activity:
            self.active += delta
            self.last_change = time.monotonic()

    def attach(self, crawler: Crawler) -> None:
        """Count every HTTP request the crawler's threads make (they share one session)."""
        self._crawler = crawler
        get = crawler.session.get

        def tracked_get(*args, **kwargs):
            self._touch(+1)
            try:
                return get(*args, **kwargs)
            except requests.RequestException as e:
                if not getattr(self._local, "image", False):  # a search or site page: into the ledger too
                    self._page_failed(args[0] if args else kwargs.get("url", ""), e)
                raise
            finally:
                self._touch(-1)

        crawler.session.get = tracked_get

    def _page_failed(self, url: str, error: Exception) -> None:
        # icrawler's parser tries a page as often as our downloads (parser max_retry): record the last try only.
        with self._activity:
            self._page_tries[url] += 1
            last = self._page_tries[url] == self.attempts
        if last:
            self._record(url, FAILED, network.page_failure_detail(error))

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        self.stopped.set()
        if self._crawler is not None:
            self._crawler.signal.set(reach_max_num=True)

    # -- the work of one downloader task
    def fetch(self, session, url: str, min_side: int | None) -> bool:
        """Download `url` and store it; True when a new image file was stored."""
        if self.stopped.is_set() or not self.ledger.claim(url):
            return False
        self._touch(+1)
        self._local.image = True
        try:
            return self._fetch(session, url, min_side)
        except Exception as e:
            log.exception("class %s: unexpected error on %s", self.cls, url)
            self._record(url, FAILED, f"unexpected error: {type(e).__name__}: {e}")
            return False
        finally:
            self._local.image = False
            self.ledger.release(url)
            self._touch(-1)

    def _fetch(self, session, url: str, min_side: int | None) -> bool:
        response, error, tries = None, "", 0
        for attempt in range(self.attempts):
            # Back off before a retry (0.5 s, 1 s, 2 s, ... at most 4 s); a stop cuts the wait short.
            if attempt and self.stopped.wait(min(0.5 * 2 ** (attempt - 1), 4.0)):
                return False
            if self.stopped.is_set():
                return False  # not settled: tried again next run
            tries += 1
            try:
                r = session.get(url, timeout=self.request_timeout_s)
            except (
                requests.exceptions.InvalidURL,
                requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema,
            ) as e:
                self._record(url, REJECTED, f"not a usable URL: {e}")
                return False
            except requests.exceptions.Timeout:
                error = f"no response within request_timeout_s={self.request_timeout_s}"
                continue
            except requests.RequestException as e:
                error = f"{type(e).__name__}: {e}"
                continue
            if r.status_code == 200:
                response = r
                break
            error = f"HTTP {r.status_code} {r.reason or ''}".strip()
            if r.status_code not in _RETRY_STATUS:
                break
        if response is None:
            self._record(url, FAILED, f"{error} ({tries} attempt{'s' if tries > 1 else ''})")
            return False
        data = response.content
        kind = sniff(data, min_side, response.headers.get("Content-Type"))
        if kind.error:
            self._record(url, REJECTED, kind.error)
            return False
        with self._lock:
            if self.stopped.is_set():
                return False
            stored = self.ledger.store(self.source, url, data, kind.ext, detail=f"{kind.size[0]}x{kind.size[1]}")
            if stored.status != OK:
                log.info("class %s: %s has the same bytes as %s", self.cls, url, stored.file)
                return False
            self.new += 1
            log.info("class %s: %d/%d %s <- %s", self.cls, self.ledger.ok_count, self.goal, stored.file, url)
            if self.new >= self.want:
                self.reached = True
                self._stop_locked()
            return True

    def _record(self, url: str, status: str, detail: str) -> None:
        with self._lock:
            if self.stopped.is_set():
                return
            log.info("class %s: %s %s: %s", self.cls, status, url, detail)
            self.ledger.record(self.source, url, status, detail)


class LedgerDownloader(ImageDownloader):
    """icrawler's ImageDownloader with download() going through an Intake (see module doc)."""

    def __init__(self, thread_num, signal, session, storage, intake: Intake):
        super().__init__(thread_num, signal, session, storage)
        self.intake = intake

    def download(self, task, default_ext, timeout=5, **kwargs):
        # icrawler's timeout, max_retry, overwrite and max_size are ignored: the Intake applies our policy.
        min_size = kwargs.get("min_size")
        task["success"] = self.intake.fetch(self.session, task["file_url"], min(min_size) if min_size else None)
        task["filename"] = None
        return task["success"]


def build(spec: EngineSpec, intake: Intake) -> Crawler:
    """The icrawler crawler of `spec`, downloading through `intake` (no network yet)."""
    crawler = spec.crawler_cls(
        downloader_cls=LedgerDownloader,
        extra_downloader_args={"intake": intake},
        storage=_NoStorage(),
        log_level=logging.INFO,
        **spec.init_kwargs,
    )
    intake.attach(crawler)
    return crawler


def run(spec: EngineSpec, intake: Intake, deadline: float) -> str:
    """Run one crawler until target, deadline or idle; returns "target", "timeout" or "exhausted"."""
    crawler = build(spec, intake)
    errors: list[BaseException] = []

    def work():
        try:
            # The base class's crawl: our arguments reach every pool unchanged.
            Crawler.crawl(
                crawler,
                feeder_kwargs=spec.feeder_kwargs,
                parser_kwargs=spec.parser_kwargs,
                downloader_kwargs=spec.downloader_kwargs,
            )
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=work, name=f"crawl-{intake.cls}", daemon=True)
    quiet_since = None
    thread.start()
    while True:
        now = time.monotonic()
        if intake.reached:
            reason = "target"
            break
        if not thread.is_alive():
            reason = "exhausted"
            break
        if now >= deadline:
            reason = "timeout"
            break
        queued = crawler.feeder.out_queue.qsize() + crawler.parser.out_queue.qsize()
        if intake.active or queued:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - max(quiet_since, intake.last_change) >= IDLE_S:
            reason = "exhausted"
            break
        time.sleep(_POLL_S)
    intake.stop()
    grace_end = time.monotonic() + STOP_GRACE_S
    while thread.is_alive() and time.monotonic() < grace_end:
        crawler.signal.set(reach_max_num=True)  # again: Crawler.crawl resets signals as it starts
        thread.join(0.1)
    if thread.is_alive():
        log.info(
            "class %s: %s still has requests in flight; they finish in the background and store nothing",
            intake.cls,
            spec.label,
        )
    if errors:
        raise errors[0]
    return reason


def crawl_web(cls: str, options: dict, ledger: Ledger, deadline: float) -> str:
    """Crawl a web source until the ledger holds max_images ok images, the deadline, or no more results."""
    source, target = options["source"], options["max_images"]
    if source == "google":
        log.warning(
            "class %s: icrawler's Google crawler is broken upstream (icrawler issue #135); "
            "expect few or no images, bing or baidu work better",
            cls,
        )
    want = target - ledger.ok_count
    specs = engine_specs(cls, options, want, seen=len(ledger.rows()), skip=ledger.is_final)
    if not specs:
        log.info("class %s: nothing left to fetch from %s", cls, source)
    reason = "exhausted"
    levels = {name: logging.getLogger(name).level for name in _ICRAWLER_LOGGERS}
    for name in _ICRAWLER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        for spec in specs:
            want = target - ledger.ok_count
            if want <= 0:
                return "target"
            if time.monotonic() >= deadline:
                return "timeout"
            spec.downloader_kwargs["max_num"] = want
            intake = Intake(cls, source, ledger, want, options)
            log.info("class %s: %s: fetching up to %d more images", cls, spec.label, want)
            t0 = time.monotonic()
            reason = run(spec, intake, deadline)
            log.info(
                "class %s: %s: %d new images in %.1f s (%s)", cls, spec.label, intake.new, time.monotonic() - t0, reason
            )
            if reason in ("target", "timeout"):
                return reason
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    return "target" if ledger.ok_count >= target else reason
