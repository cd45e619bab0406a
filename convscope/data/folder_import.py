"""The `folder` source: import an existing directory of images (e.g. a Kaggle download).

Files are copied (the source stays untouched) in sorted path order, subfolders
included, hidden files and folders skipped. Each copy's ledger row keeps the
absolute source path, so a re-run imports only files not seen before. The same
gate as for downloads applies: a file whose header Pillow cannot identify as an
image is recorded as rejected, not copied.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from convscope.data.ledger import OK, REJECTED
from convscope.data.sniff import sniff

log = logging.getLogger(__name__)


class FolderError(RuntimeError):
    pass


def source_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    return files


def listing(path) -> str:
    """What the folder holds, as the crawl rule's param: new, changed or removed files rerun the crawl.

    Names, sizes and mtimes of the files the import would read, hashed (a large folder's
    listing stays a short param); "" when the folder does not exist (the crawl says so).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        return ""
    digest = hashlib.sha256()
    files = source_files(root)
    for p in files:
        st = p.stat()
        digest.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{len(files)} files, sha256 {digest.hexdigest()[:16]}"


def import_folder(cls: str, options: dict, ledger) -> str:
    """Copy images from options["path"] until the ledger holds max_images ok images."""
    root = Path(options["path"]).expanduser()
    if not root.is_dir():
        raise FolderError(
            f"class {cls!r}: source 'folder' path {str(root)!r} is not a directory "
            f"(config key classes.{cls}.path); point it at the folder holding this class's images"
        )
    target = options["max_images"]
    files = source_files(root)
    log.info(
        "class %s: %d files under %s, %d images in the ledger, target %d",
        cls,
        len(files),
        root,
        ledger.ok_count,
        target,
    )
    for path in files:
        if ledger.ok_count >= target:
            return "target"
        key = str(path.resolve())
        if ledger.is_final(key):
            continue
        data = path.read_bytes()
        kind = sniff(data)
        if kind.error:
            ledger.record("folder", key, REJECTED, kind.error)
            continue
        stored = ledger.store("folder", key, data, kind.ext)
        if stored.status == OK and ledger.added[OK] % 100 == 0:
            log.info("class %s: %d/%d images", cls, ledger.ok_count, target)
    return "target" if ledger.ok_count >= target else "exhausted"
