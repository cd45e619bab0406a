"""The per-class crawl ledger: raw/{cls}/manifest.csv, one row per URL or source path.

icrawler keeps no URL -> file map and its resume-by-index overwrites or
re-downloads, so every source (engines, folder, synthetic) stores files through
this ledger instead:

- images are named NNNNNN.<ext> (6+ digits, ext from the decoded format), the next
  free number in the folder, so file order is crawl order and nothing is ever
  overwritten (a name is claimed with an exclusive hard link / create);
- a URL or source path that already has a final row (ok, duplicate, rejected,
  missing) is never fetched again; `failed` rows (network errors) are retried on
  the next run and then replaced, so the compacted ledger has one row per key;
- content already stored under another name (same sha256) is not stored again:
  the row says `duplicate` and names the file it duplicates.

Rows are appended as they happen (a killed crawl loses at most the file being
written) and the file is compacted on load and close. Files found in the folder
without a row (someone copied them in, or a run died between writing the file
and its row) are adopted with source "unknown", so the ledger accounts for every
file the clean stage will see.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from convscope import layout, records

log = logging.getLogger(__name__)

COLUMNS = ("source", "url_or_path", "file", "sha256", "time", "status", "detail")
OK, DUPLICATE, REJECTED, FAILED, MISSING = (
    records.OK,
    records.DUPLICATE,
    records.REJECTED,
    records.FAILED,
    records.MISSING,
)
# Final statuses: the key is not tried again. FAILED (network, HTTP 5xx...) is retried next run.
FINAL = frozenset({OK, DUPLICATE, REJECTED, MISSING})
MANIFEST = layout.LEDGER
# Files the crawl stage writes beside the images; everything else in the folder is an image
# (convscope.data.clean.SIDECARS lists the same names).
SIDECARS = frozenset({MANIFEST, layout.CRAWL_SUMMARY, layout.BOXES})
_TMP_PREFIX = ".convscope-tmp-"
_NUMBERED = re.compile(r"^(\d+)\.")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Stored:
    status: str  # OK or DUPLICATE
    file: str  # the new file (OK) or the existing file with the same bytes (DUPLICATE)


class Ledger:
    """The ledger of one class folder. Thread-safe: downloader threads share one."""

    def __init__(self, folder: Path, cls: str = ""):
        self.folder = Path(folder)
        self.cls = cls or self.folder.name
        self.path = self.folder / MANIFEST
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Insertion-ordered {id(row): row}: a retried failure's row is replaced in O(1), and
        # ok rows are counted as they come, so a 100,000-image crawl stays linear.
        self._rows: dict[int, dict] = {}
        self._ok = 0
        self._by_key: dict[str, dict] = {}
        self._by_sha: dict[str, str] = {}
        self._in_flight: set[str] = set()
        self.added: dict[str, int] = dict.fromkeys((OK, DUPLICATE, REJECTED, FAILED, MISSING), 0)
        self._next = 1
        self._load()
        self.existing = self.ok_count  # ok rows before this run

    # ---- loading ---------------------------------------------------------------

    def _load(self) -> None:
        for stale in self.folder.glob(_TMP_PREFIX + "*"):
            stale.unlink()  # half-written file of a killed run; its row was never written
        if self.path.exists():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or list(reader.fieldnames) != list(COLUMNS):
                    raise ValueError(
                        f"{self.path}: unexpected columns {reader.fieldnames}; expected {list(COLUMNS)}. "
                        "It is not a convscope crawl ledger; move it away and re-run the crawl."
                    )
                for row in reader:
                    self._index(dict(row))
        on_disk = {p.name for p in self.folder.iterdir() if p.is_file() and p.name not in SIDECARS}
        for row in self._rows.values():
            if row["status"] == OK and row["file"] not in on_disk:
                log.warning(
                    "class %s: %s (%s) is listed in %s but gone; marked missing",
                    self.cls,
                    row["file"],
                    row["url_or_path"],
                    self.path,
                )
                was = f"; was: {row['detail']}" if row["detail"] else ""
                row.update(status=MISSING, detail=f"file gone (noticed {now()}){was}")
                self._ok -= 1
                self._by_sha.pop(row["sha256"], None)
        listed = {r["file"] for r in self._rows.values() if r["status"] == OK}
        for name in sorted(on_disk - listed):
            data = (self.folder / name).read_bytes()
            digest = sha256(data)
            log.warning("class %s: %s has no ledger row; adopting it (origin unknown)", self.cls, name)
            self._index(
                dict(
                    source="unknown",
                    url_or_path="",
                    file=name,
                    sha256=digest,
                    time=now(),
                    status=OK,
                    detail="found in the folder without a ledger row; origin unknown",
                )
            )
        numbers = [int(m.group(1)) for name in on_disk if (m := _NUMBERED.match(name))]
        numbers += [int(m.group(1)) for r in self._rows.values() if (m := _NUMBERED.match(r["file"]))]
        self._next = max(numbers, default=0) + 1
        self._rewrite()

    def _index(self, row: dict) -> None:
        key = row["url_or_path"]
        old = self._by_key.get(key) if key else None
        if old is not None:
            if old["status"] in FINAL:
                return  # first final row wins; a later one can only come from a bug or a hand edit
            del self._rows[id(old)]  # a retried failure (never ok): the new row replaces it
        self._rows[id(row)] = row
        if key:
            self._by_key[key] = row
        if row["status"] == OK:
            self._ok += 1
            if row["sha256"]:
                self._by_sha.setdefault(row["sha256"], row["file"])

    def _rewrite(self) -> None:
        tmp = self.folder / f"{_TMP_PREFIX}{MANIFEST}"
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self._rows.values())
        os.replace(tmp, self.path)

    def _append(self, row: dict) -> None:
        self._index(row)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow(row)

    # ---- queries -------------------------------------------------------------

    @property
    def ok_count(self) -> int:
        return self._ok

    def rows(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self._rows.values()]

    def is_final(self, key: str) -> bool:
        row = self._by_key.get(key)
        return row is not None and row["status"] in FINAL

    def claim(self, key: str) -> bool:
        """Reserve `key` for one worker; False if it is final already or being fetched."""
        with self._lock:
            if self.is_final(key) or key in self._in_flight:
                return False
            self._in_flight.add(key)
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._in_flight.discard(key)

    # ---- updates -------------------------------------------------------------

    def record(self, source: str, key: str, status: str, detail: str) -> None:
        """A key that produced no file (rejected, failed)."""
        assert status in (REJECTED, FAILED), status
        with self._lock:
            if self.is_final(key):
                return
            self._append(
                dict(source=source, url_or_path=key, file="", sha256="", time=now(), status=status, detail=detail)
            )
            self.added[status] += 1

    def store(self, source: str, key: str, data: bytes, ext: str, detail: str = "", name: str | None = None) -> Stored:
        """Store `data` as a new image file (or note it duplicates one) and write its row.

        `name` is a preferred file name (synthetic images use their index); when it
        is taken, or not given, the next free number is used. Never overwrites.
        """
        digest = sha256(data)
        tmp = self.folder / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        tmp.write_bytes(data)
        try:
            with self._lock:
                if self.is_final(key):
                    return Stored(self._by_key[key]["status"], self._by_key[key]["file"])
                same = self._by_sha.get(digest)
                if same is not None:
                    self._append(
                        dict(
                            source=source,
                            url_or_path=key,
                            file="",
                            sha256="",
                            time=now(),
                            status=DUPLICATE,
                            detail=f"same bytes as {same}",
                        )
                    )
                    self.added[DUPLICATE] += 1
                    return Stored(DUPLICATE, same)
                file = self._place(tmp, ext.lower().lstrip("."), name)
                self._append(
                    dict(source=source, url_or_path=key, file=file, sha256=digest, time=now(), status=OK, detail=detail)
                )
                self.added[OK] += 1
                return Stored(OK, file)
        finally:
            tmp.unlink(missing_ok=True)

    def _place(self, tmp: Path, ext: str, name: str | None) -> str:
        if name and _claim_name(tmp, self.folder / name):
            placed = name
        else:
            while not _claim_name(tmp, self.folder / f"{self._next:06d}.{ext}"):
                self._next += 1
            placed = f"{self._next:06d}.{ext}"
        if m := _NUMBERED.match(placed):
            self._next = max(self._next, int(m.group(1)) + 1)
        return placed

    def close(self) -> None:
        """Compact the ledger (one row per key) and drop leftover temp files."""
        with self._lock:
            self._rewrite()
        for stale in self.folder.glob(_TMP_PREFIX + "*"):
            stale.unlink(missing_ok=True)


def _claim_name(tmp: Path, final: Path) -> bool:
    """Give `tmp`'s bytes the name `final` unless that name exists (never overwrite)."""
    try:
        os.link(tmp, final)  # atomic and fails if `final` exists
        return True
    except FileExistsError:
        return False
    except OSError:
        pass  # filesystem without hard links: exclusive create instead
    try:
        with open(final, "xb") as f:
            f.write(tmp.read_bytes())
        return True
    except FileExistsError:
        return False
