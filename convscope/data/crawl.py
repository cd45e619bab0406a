"""Crawl: fill raw/{cls}/ with images from the class's source, accounted for in its ledger.

`crawl_class` is the crawl rule's one call. Whatever the source (web engines via
convscope.data.engines, `folder`, `synthetic`), files are stored through the
class ledger (convscope.data.ledger): images NNNNNN.<ext> plus manifest.csv, and
boxes.csv for synthetic classes. Images already there count toward max_images, so
raising max_images and re-running adds only new images; nothing is overwritten.
The summary (the rule's declared output, crawl.json) holds counts and timing.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from convscope import atomic
from convscope.data import network
from convscope.data.engines import WEB_SOURCES, crawl_web
from convscope.data.folder_import import import_folder
from convscope.data.ledger import DUPLICATE, FAILED, MISSING, OK, REJECTED, Ledger
from convscope.data.synthetic import synthesize

log = logging.getLogger(__name__)


class CrawlError(RuntimeError):
    """A class that ends its crawl with no usable image."""


def crawl_class(cls: str, options: dict, out_dir: Path, summary_path: Path) -> dict:
    """Crawl one class into `out_dir` and write its summary to `summary_path`.

    `options` is convscope.config.crawl_params(config, cls). Raises CrawlError when
    the class ends with zero usable images.
    """
    t0 = time.monotonic()
    out_dir, summary_path = Path(out_dir), Path(summary_path)
    source, target = options["source"], options["max_images"]
    ledger = Ledger(out_dir, cls)
    log.info(
        "class %s: source %s, %d images already in %s, max_images %d", cls, source, ledger.ok_count, out_dir, target
    )
    try:
        stopped = _fill(cls, options, ledger, started=t0)
    finally:
        ledger.close()
    elapsed = time.monotonic() - t0
    rows = ledger.rows()
    counts = _counts(ledger, rows)
    diagnosis = network.diagnose(rows)
    if ledger.ok_count == 0:
        raise CrawlError(_no_images_message(cls, options, counts, ledger.path, stopped, diagnosis))
    if ledger.ok_count < target:
        log.warning(
            "class %s: %d of max_images %d after %.1f s (%s); the run goes on with what there is",
            cls,
            ledger.ok_count,
            target,
            elapsed,
            _STOPPED[stopped],
        )
    summary = {
        "class": cls,
        "source": source,
        "max_images": target,
        "counts": counts,
        "stopped": stopped,
        "elapsed_s": round(elapsed, 3),
        "manifest": ledger.path.name,
        # Failed requests listed in the ledger (status failed), pages included, and how many were the network's.
        "failed_requests": {"pages": diagnosis.pages, "images": diagnosis.images, "network": diagnosis.network},
    }
    atomic.write_bytes(summary_path, (json.dumps(summary, indent=2) + "\n").encode())
    log.info("class %s: done in %.1f s: %s", cls, elapsed, counts)
    return summary


def _fill(cls: str, options: dict, ledger: Ledger, started: float) -> str:
    """Bring the class towards max_images from its source; returns why it stopped (a _STOPPED key)."""
    source = options["source"]
    if ledger.ok_count >= options["max_images"]:
        return "target"
    if source == "synthetic":
        return synthesize(cls, options, ledger)
    if source == "folder":
        return import_folder(cls, options, ledger)
    if source in WEB_SOURCES:
        return crawl_web(cls, options, ledger, deadline=started + options["timeout_s"])
    raise ValueError(f"class {cls!r}: unknown crawl source {source!r}")


def _counts(ledger: Ledger, rows: list[dict]) -> dict:
    return {
        "existing": ledger.existing,
        "new": ledger.added[OK],
        "failed": ledger.added[FAILED],
        "rejected": ledger.added[REJECTED],
        "duplicate": ledger.added[DUPLICATE],
        "missing": sum(r["status"] == MISSING for r in rows),
        "total": ledger.ok_count,
    }


_STOPPED = {
    "target": "reached max_images",
    "timeout": "stopped at crawl.timeout_s",
    "exhausted": "the source had nothing more",
}


def _no_images_message(
    cls: str, options: dict, counts: dict, manifest: Path, stopped: str, diagnosis: network.Diagnosis
) -> str:
    source = options["source"]
    if diagnosis.network_down:
        return (
            f"class {cls!r}: source {source!r} gave no usable image because the network failed: "
            f"{diagnosis.words()}. This machine seems to have no working internet connection (or the host is "
            f"down). Run the crawl on a machine with internet access, or use images you have: set "
            f"classes.{cls}.source to 'folder' and classes.{cls}.path to a folder of this class's images. "
            f"Every failed request is listed in {manifest} (status 'failed')."
        )
    advice = {
        "urllist": f"check the URLs in {options.get('urls')!r} (config key classes.{cls}.urls): one reachable "
        "image URL per line",
        "greedy": f"check that {options.get('site')!r} (config key classes.{cls}.site) is reachable and links to "
        "images (<img src> or <a href> ending in .jpg/.png/...) on the same site",
        "folder": f"put image files into {options.get('path')!r} (config key classes.{cls}.path)",
        "synthetic": "check the crawl.synthetic settings",
    }.get(
        source,
        f"check the network connection and the keywords {options.get('keywords')} (config key "
        f"classes.{cls}.keywords), or choose another engine (classes.{cls}.source)",
    )
    if stopped == "timeout":
        advice += f", or raise crawl.timeout_s (now {options.get('timeout_s')} s)"
    return (
        f"class {cls!r}: source {source!r} gave no usable image ({counts['failed']} failed, "
        f"{counts['rejected']} rejected, {counts['duplicate']} duplicates this run; {_STOPPED[stopped]}). "
        f"Each URL or file and why it was not kept is listed in {manifest}. To fix: {advice}."
    )
