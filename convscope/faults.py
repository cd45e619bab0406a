"""A full disk, said in one line: which path, how many bytes were needed, how many are free.

Two halves:

- `require_space(folder, needed, what)` before a stage allocates files whose size it
  knows (prepare's memory-mapped arrays: a write into a mapped page on a full disk
  is a SIGBUS that kills the process with nothing said about the disk);
- `disk_full_message(exc)` turns any exception that comes from ENOSPC (or EDQUOT, a
  full quota), however deeply chained, into that one line; convscope.logs.job_log
  shows it instead of the traceback, which goes to the job's log file.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

_FULL = (errno.ENOSPC, errno.EDQUOT)


class NoSpace(OSError):
    """Not enough free space for a write whose size is known before it starts."""

    def __init__(self, folder, needed: int, free: int, what: str):
        self.folder, self.needed, self.free, self.what = (
            Path(folder),
            int(needed),
            int(free),
            what,
        )
        super().__init__(errno.ENOSPC, self.line(), str(folder))

    def line(self) -> str:
        return (
            f"not enough disk space in {self.folder} for {self.what}: {human(self.needed)} needed, "
            f"{human(self.free)} free; free some space there or set config key results to a folder on a "
            "larger disk"
        )

    def __str__(self) -> str:
        return self.line()


def human(n: int) -> str:
    """Bytes for people: 1.5 GB, 320 MB, 12 kB (powers of 1000, like df -H)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"


def free_bytes(folder) -> int:
    """Free space for this user on the filesystem holding `folder` (its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def require_space(folder, needed: int, what: str) -> None:
    """Raise NoSpace unless `folder`'s filesystem has `needed` bytes free."""
    free = free_bytes(folder)
    if free < needed:
        raise NoSpace(folder, needed, free, what)


def reserve(path) -> None:
    """Allocate the blocks of sparse file `path` now (a memmap's), so a full disk is an OSError here, not a
    SIGBUS at some later write into the mapping. Filesystems without fallocate are left as they are."""
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in _FULL:
            raise NoSpace(Path(path).parent, size, free_bytes(path), f"{Path(path).name}") from e
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def disk_full_message(exc: BaseException) -> str | None:
    """One line for an exception caused by a full disk or quota; None for anything else."""
    for e in _chain(exc):
        if isinstance(e, NoSpace):
            return e.line()
        if isinstance(e, OSError) and e.errno in _FULL:
            path = e.filename or _path_in_traceback(e) or _path_in_messages(exc)
            if not path:
                return (
                    f"disk full ({os.strerror(e.errno)}); free some space on the results folder's disk or set "
                    "config key results to a folder on a larger disk, then run again"
                )
            folder = Path(path).parent
            return (
                f"disk full while writing {path} ({os.strerror(e.errno)}): {human(free_bytes(folder))} free in "
                f"{folder}; free some space there or set config key results to a folder on a larger disk, then "
                "run again"
            )
    return None


_H5_FILENAME = re.compile(r"filename = '([^']+)'")


def _path_in_messages(exc: BaseException) -> str | None:
    """The file named in a chained message: HDF5 (Keras' .h5 weights) names it there, not in errno's fields."""
    for e in _chain(exc):
        found = _H5_FILENAME.search(str(e))
        if found:
            return found.group(1)
    return None


def is_full_disk_noise(exc: BaseException | None) -> bool:
    """An error a full disk causes again while objects are freed (an HDF5 file that cannot flush)."""
    text = str(exc)
    return "errno = 28" in text or "No space left on device" in text or "Disk quota exceeded" in text


class Stated(RuntimeError):
    """A failure whose message says all the person needs (what failed, which setting to change).

    convscope.logs.job_log shows it as one line, like a full disk; the traceback goes to
    the job's log file only.
    """


def one_line(exc: BaseException) -> str | None:
    """The one line for a full disk or a Stated failure anywhere in `exc`'s chain; None for anything else."""
    full = disk_full_message(exc)
    if full is not None:
        return full
    return next((str(e) for e in _chain(exc) if isinstance(e, Stated)), None)


def _path_in_traceback(exc: BaseException) -> str | None:
    """The file a failed write was for, from the innermost frame that names one (f.write has no filename)."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.endswith(os.path.join("convscope", "logs.py")):
            found = _named_path(tb.tb_frame.f_locals) or found
        tb = tb.tb_next
    return found


def _named_path(names: dict) -> str | None:
    for name in ("tmp", "path", "filename", "target", "f", "out", "fh"):
        value = names.get(name)
        value = getattr(value, "name", value)  # an open file: its name
        if isinstance(value, (str, Path)) and os.sep in str(value):
            return str(value)
    return None
