"""Prepare: decode and resize every split image once, into memory-mappable arrays.

For one input size, writes per split (train, val, test; the workflow runs one job
per split, so an edit of one split leaves the others' arrays alone) into `out_dir`:
  {split}.npy          uint8 N x size x size x 3 (np.load(..., mmap_mode="r"))
  {split}.labels.npy   int32 N, label = index of the class in config order
  {split}.index.csv    row, cls, label, file, sha256, box_x0, box_y0, box_x1, box_y1
                       (box in prepared pixel coords, empty when the class has no
                       boxes.csv or the box is cropped away entirely)

Rows are sorted by class (config order) then file, so the output is the same
whatever order the decode threads finish in. Arrays are written through
np.lib.format.open_memmap, so memory stays bounded by a few images per thread.
Decoding and resizing go through convscope.data.imageio (JPEG draft mode and
reducing_gap make camera-sized JPEGs cheap); Pillow releases the GIL while it
decodes and resizes, so a thread pool uses every core.
"""

from __future__ import annotations

import csv
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convscope import faults, layout
from convscope.data import imageio
from convscope.layout import SPLITS

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["row", "cls", "label", "file", "sha256", "box_x0", "box_y0", "box_x1", "box_y1"]
SPLITS_COLUMNS = ("cls", "file", "sha256", "split")
_CHUNK_PER_THREAD = 16  # images in flight per thread: bounds memory, keeps threads busy
_PROGRESS_EVERY_S = 10.0


class PrepareError(RuntimeError):
    """A problem with prepare's inputs, naming the file or class at fault."""


@dataclass(frozen=True)
class Source:
    """What prepare reads: a split list, the raw folder it names files in, the classes in label order."""

    splits_csv: Path
    raw_root: Path
    classes: tuple

    def __post_init__(self):
        object.__setattr__(self, "splits_csv", Path(self.splits_csv))
        object.__setattr__(self, "raw_root", Path(self.raw_root))
        object.__setattr__(self, "classes", tuple(self.classes))


@dataclass(frozen=True)
class PrepareJob:
    """How one prepare job runs: the decode threads, and which splits of the list it writes."""

    threads: int
    splits: tuple = SPLITS


@dataclass(frozen=True)
class _Writer:
    """What writing one split's arrays needs besides its items."""

    raw_root: Path
    size: int
    policy: str
    out_dir: Path
    pool: ThreadPoolExecutor
    threads: int


@dataclass(frozen=True)
class Item:
    cls: str
    label: int
    file: str  # relative to raw_root, e.g. "circle/000001.png"
    sha256: str
    box: tuple[float, float, float, float] | None  # raw pixel coords
    box_source: tuple[int, int] | None  # (width, height) boxes.csv says the box refers to


def read_splits(splits_csv: Path, classes: list[str]) -> dict[str, list[dict]]:
    """A split list's rows per split (clean/splits/{split}.csv; any file of its columns), sorted by class order then file."""
    order = {c: i for i, c in enumerate(classes)}
    by_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    with open(splits_csv, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in SPLITS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise PrepareError(f"{splits_csv}: missing column(s) {missing}; re-run the split stage (rule split)")
        for n, row in enumerate(reader, start=2):
            if row["cls"] not in order:
                raise PrepareError(
                    f"{splits_csv} line {n}: class {row['cls']!r} is not in the config's classes "
                    f"{classes}; re-run clean and split for this config"
                )
            if row["split"] not in by_split:
                raise PrepareError(f"{splits_csv} line {n}: split {row['split']!r} is not one of {list(SPLITS)}")
            by_split[row["split"]].append(row)
    for rows in by_split.values():
        rows.sort(key=lambda r: (order[r["cls"]], r["file"]))
    return by_split


def read_boxes(raw_root: Path, cls: str) -> dict[str, tuple]:
    """raw_root/{cls}/boxes.csv as {file relative to raw_root: ((x0, y0, x1, y1), (w, h) or None)}."""
    path = raw_root / cls / layout.BOXES
    if not path.exists():
        return {}
    boxes = {}
    with open(path, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
                wh = (int(row["width"]), int(row["height"])) if row.get("width") and row.get("height") else None
            except (KeyError, TypeError, ValueError) as e:
                raise PrepareError(f"{path} line {n}: bad box row {row} ({e})") from e
            name = row["file"]
            # boxes.csv may name files relative to the class folder or to raw_root.
            rel = name if name.startswith(f"{cls}/") else f"{cls}/{name}"
            boxes[rel] = (box, wh)
    return boxes


def _load(raw_root: Path, item: Item, size: int, policy: str) -> tuple[np.ndarray, tuple | None]:
    path = raw_root / item.file
    try:
        # clean already applied the size guard; here every kept file must decode.
        img = imageio.load_rgb(path, draft_size=(size, size), max_pixels=sys.maxsize)
        source_size = img.info["source_size"]
        pixels = np.asarray(imageio.resize_square(img, size, policy), dtype=np.uint8)
    except Exception as e:
        raise PrepareError(
            f"{path} (class {item.cls!r}) was kept by clean but fails to decode now: {e}. "
            "Was the raw file changed after clean? Re-run clean (e.g. `snakemake -R clean`)."
        ) from e
    box = None
    if item.box is not None:
        if item.box_source is not None and tuple(item.box_source) != tuple(source_size):
            raise PrepareError(
                f"{path}: boxes.csv says the image is {item.box_source[0]}x{item.box_source[1]} but it "
                f"decodes as {source_size[0]}x{source_size[1]}; its box cannot be placed"
            )
        box = imageio.map_box(item.box, source_size, size, policy)
    if pixels.shape != (size, size, 3):
        raise PrepareError(f"{path}: resized to {pixels.shape}, expected {(size, size, 3)}")
    return pixels, box


def _write_split(w: _Writer, split: str, items: list[Item]) -> dict:
    tmp = {k: w.out_dir / f".tmp-{split}.{k}" for k in layout.PREPARED_KINDS}
    try:
        return _fill_split(w, split, items, tmp)
    finally:
        for path in tmp.values():  # left over only when filling failed
            path.unlink(missing_ok=True)


def _fill_split(w: _Writer, split: str, items: list[Item], tmp: dict) -> dict:
    n, size = len(items), w.size
    images = np.lib.format.open_memmap(tmp["npy"], mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    faults.reserve(tmp["npy"])  # a disk filled since the check: an error now, not a SIGBUS mid-write
    labels = np.empty(n, dtype=np.int32)
    boxes: list[tuple | None] = [None] * n
    start = last = time.monotonic()
    chunk = max(1, w.threads * _CHUNK_PER_THREAD)
    for lo in range(0, n, chunk):
        batch = items[lo : lo + chunk]
        for i, (pixels, box) in enumerate(w.pool.map(lambda it: _load(w.raw_root, it, size, w.policy), batch), lo):
            images[i] = pixels
            labels[i] = items[i].label
            boxes[i] = box
        now = time.monotonic()
        if now - last >= _PROGRESS_EVERY_S and lo + len(batch) < n:
            done = lo + len(batch)
            log.info("%s: %d/%d images (%.0f img/s)", split, done, n, done / (now - start))
            last = now
    images.flush()
    del images  # close the memmap before the rename
    np.save(tmp[layout.PREPARED_LABELS], labels)
    with open(tmp[layout.PREPARED_INDEX], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(INDEX_COLUMNS)
        for i, (item, box) in enumerate(zip(items, boxes)):
            coords = [f"{v:.2f}" for v in box] if box is not None else [""] * 4
            writer.writerow([i, item.cls, item.label, item.file, item.sha256, *coords])
    # Publish complete files only: a crash never leaves a plausible-looking array.
    for kind, path in tmp.items():
        os.replace(path, layout.prepared_in(w.out_dir, split, kind))
    elapsed = time.monotonic() - start
    return {
        "images": n,
        "seconds": elapsed,
        "boxes": sum(b is not None for b in boxes),
        "boxes_cropped_away": sum(it.box is not None and b is None for it, b in zip(items, boxes)),
    }


def prepare(source: Source, size: int, options: dict, out_dir, job: PrepareJob) -> dict:
    """Write {split}.npy, .labels.npy and .index.csv for each of job.splits; returns per-split counts.

    source.splits_csv: a split list; rows of splits not in job.splits are left out.
    options: the config `prepare` section (its resize policy).
    """
    out_dir, classes, threads = Path(out_dir), list(source.classes), job.threads
    policy = options["resize"]
    if policy not in imageio.POLICIES:
        raise PrepareError(
            f"config key prepare.resize: {policy!r} is not allowed; allowed values: {list(imageio.POLICIES)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    by_split = {s: rows for s, rows in read_splits(source.splits_csv, classes).items() if s in job.splits}
    boxes = {}
    for cls in classes:
        boxes.update(read_boxes(source.raw_root, cls))
    total = sum(map(len, by_split.values()))
    counts = ", ".join(f"{s} {len(r)}" for s, r in by_split.items())
    log.info(
        "preparing %d images at %dx%d (%s, %d threads) into %s: %s", total, size, size, policy, threads, out_dir, counts
    )
    # The arrays are memory-mapped: on a full disk a write would be a SIGBUS, so check first.
    needed = total * (size * size * 3 + 4 + 256) + 3 * len(by_split) * 4096  # pixels, labels, index rows, headers
    faults.require_space(out_dir, needed, f"the arrays of {total} images at {size}x{size}")
    items = {split: _items(rows, classes, boxes) for split, rows in by_split.items()}
    summary = {}
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="prepare") as pool:
        writer = _Writer(source.raw_root, size, policy, out_dir, pool, threads)
        for split, todo in items.items():
            stats = _write_split(writer, split, todo)
            summary[split] = {**stats, "per_class": {c: sum(it.cls == c for it in todo) for c in classes}}
            _log_split(split, summary[split])
    return summary


def _items(rows: list[dict], classes: list[str], boxes: dict) -> list[Item]:
    """One split's rows as Items: the class's label index, and the box when boxes.csv has one."""
    label = {c: i for i, c in enumerate(classes)}
    items = []
    for row in rows:
        box, wh = boxes.get(row["file"], (None, None))
        items.append(Item(row["cls"], label[row["cls"]], row["file"], row["sha256"], box, wh))
    return items


def _log_split(split: str, stats: dict) -> None:
    cropped = stats["boxes_cropped_away"]
    log.info(
        "%s: %d images in %.1f s (%s); %d with a box%s",
        split,
        stats["images"],
        stats["seconds"],
        ", ".join(f"{c} {k}" for c, k in stats["per_class"].items()),
        stats["boxes"],
        f", {cropped} box(es) cropped away entirely" if cropped else "",
    )
