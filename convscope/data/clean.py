"""Clean: one manifest row per raw file, kept or quarantined with a reason.

Every file under raw/{cls}/ except the sidecars we write gets exactly one row,
so raw = kept + quarantined per class. A file is decoded fully (imageio.load_rgb)
and quarantined when it is not a usable image, too small, an exact (sha256) or
near (perceptual hash) duplicate of an earlier file of its class, or found in two
classes (ambiguous label: quarantined from every class it appears in).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagehash
import numpy as np

from convscope import atomic, records
from convscope.data import imageio

# Files the crawl stage writes beside the images, decided by name, not extension,
# so a .txt or .svg posing as an image still gets its row. The ledger owns the list.
from convscope.data.ledger import SIDECARS

log = logging.getLogger(__name__)

COLUMNS = [
    "cls", "file", "sha256", "phash", "width", "height", "mode", "format",
    "status", "reason", "dup_of", "cluster", "detail",
]  # fmt: skip
KEPT, QUARANTINED = records.KEPT, records.QUARANTINED
TOO_SMALL = "too_small"
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
AMBIGUOUS = "ambiguous_label"
# Hashing needs only a small image: JPEGs decode at 1/2..1/8 scale (still fully read).
_DRAFT = (128, 128)
_CLUSTER_CHARS = 16  # cluster id = leading sha256 hex digits of its representative


class CleanError(RuntimeError):
    """A class the clean stage cannot produce usable data for."""


def raw_files(raw_root: Path, cls: str) -> list[Path]:
    """The raw image files of one class: every plain file but our sidecars, sorted."""
    folder = Path(raw_root) / cls
    if not folder.is_dir():
        raise CleanError(f"class {cls!r}: raw folder {folder} does not exist; run the crawl stage for it first")
    files = []
    for p in sorted(folder.iterdir()):
        if p.name in SIDECARS:
            continue
        if p.is_dir():
            log.warning("class %s: ignoring subfolder %s (images are expected directly in %s)", cls, p, folder)
            continue
        files.append(p)
    return files


def _inspect(cls: str, path: Path, options: dict) -> dict:
    """Hash and fully decode one file; the row without its dedup fields."""
    row = dict.fromkeys(COLUMNS, "")
    row.update(cls=cls, file=f"{cls}/{path.name}")
    try:
        row["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        row.update(status=QUARANTINED, reason=imageio.UNDECODABLE, detail=f"cannot read: {e}")
        return row
    try:
        img = imageio.load_rgb(path, draft_size=_DRAFT, max_pixels=options["max_pixels"])
    except imageio.ImageRejected as e:
        row.update(e.header)
        row.update(status=QUARANTINED, reason=e.reason, detail=e.detail)
        return row
    width, height = img.info["source_size"]
    row.update(width=width, height=height, mode=img.info["source_mode"], format=img.info["source_format"])
    if min(width, height) < options["min_side"]:
        row.update(
            status=QUARANTINED,
            reason=TOO_SMALL,
            detail=f"{width}x{height}, shorter side below min_side={options['min_side']}",
        )
        return row
    row["phash"] = str(imagehash.phash(img))
    row["status"] = KEPT
    return row


def _near_pairs(hashes: np.ndarray, threshold: int):
    """(i, j), i < j, whose 64-bit hashes differ in <= threshold bits (chunked rows)."""
    step = max(1, 4_000_000 // len(hashes))
    for start in range(0, len(hashes), step):
        block = hashes[start : start + step, None] ^ hashes[None, :]
        ii, jj = np.nonzero(np.bitwise_count(block) <= threshold)
        ii = ii + start
        keep = ii < jj
        yield from zip(ii[keep].tolist(), jj[keep].tolist())


def _phash_ints(rows: list[dict]) -> np.ndarray:
    return np.array([int(r["phash"], 16) for r in rows], dtype=np.uint64)


def _mark_ambiguous(by_class: dict[str, list[dict]], threshold: int) -> None:
    """Quarantine every image that matches (sha256 or phash) an image of another class."""
    usable = [r for rows in by_class.values() for r in rows if r["status"] == KEPT]
    first_of = {}  # (sha, cls) -> row, to name a counterpart for dup_of
    classes_of: dict[str, set] = {}
    for r in usable:
        classes_of.setdefault(r["sha256"], set()).add(r["cls"])
        first_of.setdefault((r["sha256"], r["cls"]), r)
    hits: dict[int, str] = {}  # id(row) -> counterpart file
    for r in usable:
        others = classes_of[r["sha256"]] - {r["cls"]}
        if others:
            hits[id(r)] = first_of[(r["sha256"], min(others))]["file"]
    if threshold >= 0 and len(usable) > 1:
        hashes = _phash_ints(usable)
        for i, j in _near_pairs(hashes, threshold):
            a, b = usable[i], usable[j]
            if a["cls"] != b["cls"]:
                hits.setdefault(id(a), b["file"])
                hits.setdefault(id(b), a["file"])
    for r in usable:
        if id(r) in hits:
            r.update(
                status=QUARANTINED,
                reason=AMBIGUOUS,
                dup_of=hits[id(r)],
                detail="same or nearly the same image is in another class",
            )


def _collapse(rows: list[dict], threshold: int) -> None:
    """Within one class: exact then near duplicates -> one kept representative per cluster.

    Clusters are connected components of "phash distance <= threshold" over the
    distinct files; the representative is the first file in sorted order (the
    earliest crawled), so adding images later does not change which one is kept.
    """
    usable = [r for r in rows if r["status"] == KEPT]
    # Exact duplicates: the first file with a sha256 stands for all of them.
    first: dict[str, dict] = {}
    distinct = []
    for r in usable:
        if r["sha256"] in first:
            r.update(status=QUARANTINED, reason=DUPLICATE, dup_of=first[r["sha256"]]["file"])
        else:
            first[r["sha256"]] = r
            distinct.append(r)
    parent = list(range(len(distinct)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if threshold >= 0 and len(distinct) > 1:
        hashes = _phash_ints(distinct)
        for i, j in _near_pairs(hashes, threshold):
            ri, rj = root(i), root(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)  # the earlier file stays the root
    for i, r in enumerate(distinct):
        rep = distinct[root(i)]
        r["cluster"] = rep["sha256"][:_CLUSTER_CHARS]
        if rep is not r:
            r.update(
                status=QUARANTINED,
                reason=NEAR_DUPLICATE,
                dup_of=rep["file"],
                detail=f"phash within {threshold} bits of {rep['file']}",
            )
    for r in usable:
        if r["reason"] == DUPLICATE:
            r["cluster"] = first[r["sha256"]]["cluster"]


def summary_table(by_class: dict[str, list[dict]]) -> str:
    """Per class: raw, kept, quarantined, and quarantined by reason."""
    reasons = sorted({r["reason"] for rows in by_class.values() for r in rows if r["reason"]})
    header = ["class", "raw", "kept", "quarantined", *reasons]
    lines = [header]
    totals = Counter()
    for cls, rows in by_class.items():
        counts = Counter(r["reason"] for r in rows if r["status"] == QUARANTINED)
        kept = sum(r["status"] == KEPT for r in rows)
        line = [cls, len(rows), kept, sum(counts.values()), *(counts[x] for x in reasons)]
        totals.update(dict(zip(header[1:], line[1:])))
        lines.append(line)
    lines.append(["TOTAL", *(totals[h] for h in header[1:])])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(v).rjust(w) for v, w in zip(line, widths)) for line in lines)


def clean(raw_root: Path, classes: list[str], options: dict, out_csv: Path, threads: int | None = None) -> list[dict]:
    """Write the clean manifest for `classes` under `raw_root`; return its rows.

    options: the config's `clean` section (min_side, max_pixels, near_duplicate_distance).
    Raises CleanError naming the class when a class ends with no kept image.
    """
    raw_root = Path(raw_root)
    threshold = int(options["near_duplicate_distance"])
    files = {cls: raw_files(raw_root, cls) for cls in classes}
    jobs = [(cls, p) for cls in classes for p in files[cls]]
    log.info("clean: %d raw files in %d classes under %s", len(jobs), len(classes), raw_root)
    threads = threads or min(8, (os.cpu_count() or 1) + 2)  # decoding is I/O + GIL-free C
    by_class: dict[str, list[dict]] = {cls: [] for cls in classes}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # map keeps input order, so the manifest is sorted and deterministic.
        for n, row in enumerate(pool.map(lambda job: _inspect(job[0], job[1], options), jobs), 1):
            by_class[row["cls"]].append(row)
            if n % 500 == 0:
                log.info("clean: inspected %d/%d files", n, len(jobs))
    _mark_ambiguous(by_class, threshold)
    for rows in by_class.values():
        _collapse(rows, threshold)
    rows = [r for cls in classes for r in by_class[cls]]
    assert sum(len(f) for f in files.values()) == len(rows)  # one row per raw file
    log.info("clean summary (raw = kept + quarantined):\n%s", summary_table(by_class))
    empty = [cls for cls in classes if not any(r["status"] == KEPT for r in by_class[cls])]
    if empty:
        details = "; ".join(
            f"class {cls!r}: {len(by_class[cls])} raw files, none kept "
            f"({dict(Counter(r['reason'] for r in by_class[cls])) or 'folder is empty'})"
            for cls in empty
        )
        raise CleanError(
            f"{details}. Crawl more images for it (crawl max_images / other keywords or source), "
            f"or relax the clean settings (clean.min_side, clean.near_duplicate_distance)."
        )
    atomic.write_csv(out_csv, rows, COLUMNS)
    return rows
