"""Atomic file writes: readers (and Snakemake) never see half a file.

The one way files are written into results: write to a temporary file beside the
target, then rename over it. `write_bytes`/`write_text`/`write_json`/`write_csv` for
data in hand; `path(target)` for savers that take a path (Keras' model.save, np.save).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, data, *, indent: int = 2) -> None:
    """JSON (numpy scalars and arrays, Paths allowed) with a trailing newline."""
    write_bytes(path, (json.dumps(data, indent=indent, default=_jsonable) + "\n").encode())


@contextlib.contextmanager
def path(target) -> Iterator[Path]:
    """A temporary path beside `target` (same suffixes, which savers check); renamed into place on success.

    On an exception the temporary file is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")  # keeps every suffix (.weights.h5)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_csv(path, rows, columns) -> bytes:
    """Rows (dicts) as CSV with a header of `columns`; returns the bytes written."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    data = buf.getvalue().encode()
    write_bytes(path, data)
    return data


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
