"""Clean: one manifest row per file that came in, kept or quarantined with a reason.

Every file under raw/{cls}/ except the sidecars we write gets exactly one row, and
so does every ledger row whose bytes were turned away at import (not an image,
empty, decompression bomb, exact copy: `stage` = import, no file), so the manifest
is the one list of everything that came in. A file is decoded fully
(imageio.load_rgb) and quarantined when it is not a usable image, too small, an
exact (sha256) or near (pixel near copy, convscope.data.nearcopy) duplicate of a kept
file of its class, or also found in another class (ambiguous label).

Splits never move: rows of the previous manifest (`prior`, same file and bytes,
same deciding options) keep their decision; only newcomers are decided
(convscope.data.dedup), so an addition can quarantine only itself.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np

from convscope import atomic, layout
from convscope.data import dedup, imageio, nearcopy, quality, review

# Files the crawl stage writes beside the images, decided by name, not extension,
# so a .txt or .svg posing as an image still gets its row. The ledger owns the list.
from convscope.data import ledger as ledger_mod
from convscope.data.ledger import SIDECARS

log = logging.getLogger(__name__)

COLUMNS = [
    "cls",
    "file",
    "sha256",
    "phash",
    "width",
    "height",
    "mode",
    "format",
    "status",
    "reason",
    "dup_of",
    "cluster",
    "detail",
    "stage",
    "source",
    "review",
    *quality.COLUMNS,
]
KEPT, QUARANTINED = dedup.KEPT, dedup.QUARANTINED
TOO_SMALL = "too_small"
DUPLICATE = dedup.DUPLICATE
NEAR_DUPLICATE = dedup.NEAR_DUPLICATE
AMBIGUOUS = dedup.AMBIGUOUS
# Hashing needs only a small image: JPEGs decode at 1/2..1/8 scale (still fully read).
_DRAFT = (128, 128)
# The options that decide a row's status: a prior manifest made with other values is not reused.
DECIDING = ("min_side", "max_pixels", "near_copy")
NEAR_COPY_DEFAULT = 10.0  # config clean.near_copy (schemas/config.schema.yaml)


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
            log.warning(
                "class %s: ignoring subfolder %s (images are expected directly in %s)",
                cls,
                p,
                folder,
            )
            continue
        files.append(p)
    return files


def _inspect(cls: str, path: Path, options: dict) -> tuple[dict, np.ndarray | None]:
    """Hash and fully decode one file: the row without its dedup fields, and its near-copy thumbnail."""
    row = dict.fromkeys(COLUMNS, "")
    row.update(cls=cls, file=f"{cls}/{path.name}", stage="clean")
    try:
        row["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        row.update(status=QUARANTINED, reason=imageio.UNDECODABLE, detail=f"cannot read: {e}")
        return row, None
    try:
        img = imageio.load_rgb(path, draft_size=_DRAFT, max_pixels=options["max_pixels"])
    except imageio.ImageRejected as e:
        row.update(e.header)
        row.update(status=QUARANTINED, reason=e.reason, detail=e.detail)
        return row, None
    width, height = img.info["source_size"]
    row.update(
        width=width,
        height=height,
        mode=img.info["source_mode"],
        format=img.info["source_format"],
    )
    if min(width, height) < options["min_side"]:
        row.update(
            status=QUARANTINED,
            reason=TOO_SMALL,
            detail=f"{width}x{height}, shorter side below min_side={options['min_side']}",
        )
        return row, None
    row["phash"] = str(imagehash.phash(img))
    row.update(quality.measure(img, (width, height)))
    row["status"] = KEPT
    return row, nearcopy.thumbnail(img)


def summary_table(by_class: dict[str, list[dict]]) -> str:
    """Per class: raw, kept, quarantined, and quarantined by reason."""
    reasons = sorted({r["reason"] for rows in by_class.values() for r in rows if r["reason"]})
    header = ["class", "raw", "kept", "quarantined", *reasons]
    lines = [header]
    totals = Counter()
    for cls, rows in by_class.items():
        counts = Counter(r["reason"] for r in rows if r["status"] == QUARANTINED)
        kept = sum(r["status"] == KEPT for r in rows)
        line = [
            cls,
            len(rows),
            kept,
            sum(counts.values()),
            *(counts[x] for x in reasons),
        ]
        totals.update(dict(zip(header[1:], line[1:])))
        lines.append(line)
    lines.append(["TOTAL", *(totals[h] for h in header[1:])])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(v).rjust(w) for v, w in zip(line, widths)) for line in lines)


def import_rejects(raw_root: Path, cls: str) -> list[dict]:
    """Rows for what the crawl turned away at import (ledger: rejected, duplicate, missing)."""
    path = Path(raw_root) / cls / ledger_mod.MANIFEST
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        ledger = list(csv.DictReader(f))
    rows = []
    for entry in ledger:
        status = entry.get("status")
        if status not in (
            ledger_mod.REJECTED,
            ledger_mod.DUPLICATE,
            ledger_mod.MISSING,
        ):
            continue  # ok rows are the files; failed ones (network) never came in
        row = dict.fromkeys(COLUMNS, "")
        detail = entry.get("detail", "")
        row.update(
            cls=cls,
            status=QUARANTINED,
            stage="import",
            source=entry.get("url_or_path", ""),
            sha256=entry.get("sha256", ""),
            detail=f"at import: {detail}",
        )
        if status == ledger_mod.DUPLICATE:
            row.update(
                reason=DUPLICATE,
                dup_of=f"{cls}/{detail.removeprefix('same bytes as ').strip()}",
            )
        elif status == ledger_mod.MISSING:
            row.update(
                file=f"{cls}/{entry['file']}" if entry.get("file") else "",
                reason="missing",
            )
        else:
            row["reason"] = _import_reason(detail)
        rows.append(row)
    return rows


def _import_reason(detail: str) -> str:
    """The clean reason for the crawl gate's message (convscope.data.sniff)."""
    if detail.startswith("empty"):
        return imageio.EMPTY_FILE
    if detail.startswith("decompression-bomb"):
        return imageio.TOO_LARGE
    if "smaller than min_side" in detail:
        return TOO_SMALL
    return imageio.NOT_AN_IMAGE


def _ledger_sources(raw_root: Path, cls: str) -> dict[str, str]:
    """{manifest file: URL or source path} from the class's crawl ledger."""
    path = Path(raw_root) / cls / ledger_mod.MANIFEST
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {f"{cls}/{r['file']}": r["url_or_path"] for r in csv.DictReader(f) if r.get("file")}


def options_path(manifest_csv: Path) -> Path:
    """The sidecar recording the deciding options of a manifest (to know if it can be reused)."""
    return layout.options_beside(manifest_csv)


def _deciding(options: dict) -> dict:
    return {k: options.get(k, NEAR_COPY_DEFAULT) if k == "near_copy" else options[k] for k in DECIDING}


def read_prior(prior_csv: Path | None, options: dict) -> dict[str, dict]:
    """{file: row} of a previous manifest whose decisions still hold (same deciding options)."""
    if prior_csv is None or not Path(prior_csv).is_file():
        return {}
    deciding = _deciding(options)
    side = options_path(prior_csv)
    made_with = json.loads(side.read_text()) if side.is_file() else None
    if made_with != deciding:
        log.warning(
            "clean: %s was made with %s, now %s: every file is decided afresh (splits may move)",
            prior_csv,
            made_with,
            deciding,
        )
        return {}
    with open(prior_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("file") and r.get("stage", "clean") == "clean"]
    # A row a review changed is decided afresh, so removing the review restores the automatic decision.
    return {r["file"]: r for r in rows if not r.get("review")}


_DECISION = ("status", "reason", "dup_of", "cluster", "detail")


def decide(by_class: dict[str, list[dict]], prior: dict[str, dict], near) -> int:
    """Keep the prior's decisions for unchanged files, decide the newcomers; return how many were new.

    near: the dedup.Near search, or a function making it (called only when there are newcomers:
    a rerun that adds no file, e.g. after a review edit, need not build and calibrate it)."""
    established, newcomers = {c: [] for c in by_class}, {c: [] for c in by_class}
    for cls, rows in by_class.items():
        for r in rows:
            before = prior.get(r["file"])
            if before is not None and before["sha256"] == r["sha256"] and before["cls"] == r["cls"]:
                r.update({k: before.get(k, "") for k in _DECISION})
                established[cls].append(r)
            else:
                newcomers[cls].append(r)
    if not any(newcomers.values()):
        return 0
    near = near() if callable(near) else near
    every = [r for rows in established.values() for r in rows]
    dedup.mark_ambiguous(every, [r for rows in newcomers.values() for r in rows], near)
    for cls in by_class:
        dedup.collapse(established[cls], newcomers[cls], near)
    return sum(len(rows) for rows in newcomers.values())


def _near(by_class: dict[str, list[dict]], prior: dict[str, dict], thumbs: dict, options: dict) -> dedup.Near:
    """The near-copy search, calibrated on the images kept before and the decodable newcomers."""
    kept = [
        r["file"]
        for rows in by_class.values()
        for r in rows
        if r["file"] in thumbs and prior.get(r["file"], {}).get("status", KEPT) == KEPT
    ]
    near = dedup.Near.build(thumbs, kept, float(options.get("near_copy", NEAR_COPY_DEFAULT)))
    log.info("clean: near copies: %s", near.calibration.describe() if near.pixels else "off (clean.near_copy = 0)")
    return near


@dataclass(frozen=True)
class Memory:
    """What clean remembers and obeys besides the raw folders."""

    prior: Path | None = None  # the previous manifest: its decisions stand for unchanged files
    review: Path | None = None  # the user's review file (config clean.review)


def clean(
    raw_root: Path, classes: list[str], options: dict, out_csv: Path, memory: Memory = Memory(), threads: int = 0
) -> list[dict]:
    """Write the clean manifest for `classes` under `raw_root`; return its rows.

    options: the config's `clean` section (min_side, max_pixels, near_copy).
    Raises CleanError naming the class when a class ends with no kept image.
    """
    raw_root = Path(raw_root)
    earlier = read_prior(memory.prior, options)  # read before anything is written
    decisions = review.read_review(memory.review, classes) if memory.review else {}
    files = {cls: raw_files(raw_root, cls) for cls in classes}
    jobs = [(cls, p) for cls in classes for p in files[cls]]
    log.info("clean: %d raw files in %d classes under %s", len(jobs), len(classes), raw_root)
    threads = threads or min(8, (os.cpu_count() or 1) + 2)  # decoding is I/O + GIL-free C
    by_class: dict[str, list[dict]] = {cls: [] for cls in classes}
    thumbs: dict[str, np.ndarray] = {}
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # map keeps input order, so the manifest is sorted and deterministic.
        for n, (row, thumb) in enumerate(pool.map(lambda job: _inspect(job[0], job[1], options), jobs), 1):
            by_class[row["cls"]].append(row)
            if thumb is not None:
                thumbs[row["file"]] = thumb
            if n % 500 == 0:
                log.info("clean: inspected %d/%d files", n, len(jobs))
    started = time.perf_counter()
    new = decide(by_class, earlier, lambda: _near(by_class, earlier, thumbs, options))
    log.info(
        "clean: %d files keep their earlier decision, %d newcomers decided now (duplicate search %.2f s)",
        len(jobs) - new,
        new,
        time.perf_counter() - started,
    )
    for cls in classes:
        sources = _ledger_sources(raw_root, cls)
        for r in by_class[cls]:
            r["source"] = sources.get(r["file"], "")
        by_class[cls] += import_rejects(raw_root, cls)
    rows = [r for cls in classes for r in by_class[cls]]
    assert len(jobs) == sum(r["stage"] == "clean" for r in rows)  # one row per raw file
    if decisions:
        review.apply_review(rows, decisions, str(memory.review))
    quality.flag_rows([r for r in rows if r["status"] == KEPT], options.get("quality") or {})
    by_label = {cls: [r for r in rows if r["cls"] == cls] for cls in classes}  # after relabels
    log.info("clean summary (raw = kept + quarantined; rows at import included):\n%s", summary_table(by_label))
    _fail_on_empty(by_label)
    atomic.write_csv(out_csv, rows, COLUMNS)
    atomic.write_bytes(options_path(out_csv), json.dumps(_deciding(options)).encode())
    return rows


def _fail_on_empty(by_class: dict[str, list[dict]]) -> None:
    empty = [cls for cls, rows in by_class.items() if not any(r["status"] == KEPT for r in rows)]
    if empty:
        details = "; ".join(
            f"class {cls!r}: {len(by_class[cls])} raw files, none kept "
            f"({dict(Counter(r['reason'] for r in by_class[cls])) or 'folder is empty'})"
            for cls in empty
        )
        raise CleanError(
            f"{details}. Crawl more images for it (crawl max_images / other keywords or source), "
            f"or relax the clean settings (clean.min_side, clean.near_copy)."
        )
