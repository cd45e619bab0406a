"""One run at a time per results folder: a lock on the folder itself.

Snakemake's own lock lives in the working directory's .snakemake/, so two runs
from two checkouts (or two --directory folders) writing the same `results:`
folder are not stopped by it: they download the same images twice and trip
over each other's temporary files. `acquire` takes an exclusive flock on
results/.lock for as long as the calling process lives and writes the holder
(pid, host, working directory, start time, command) into it, so the second run
can say who holds the folder.

The kernel drops a flock when its process ends, however it ends (kill -9
included): a lock file left behind by a dead run is simply taken over. Where the
filesystem offers no flock (some network filesystems), the holder written in the
file decides: a live pid on this host keeps the folder, anything else is stale.

The Snakefile takes it in `onstart` (rules/common.smk), which Snakemake runs only
in the main process of a real run: not for dry runs (they write nothing), not in
the job processes it spawns (they get --no-hooks), so jobs never wait on it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from convscope.layout import Results

_held: dict[str, int] = {}  # resolved folder -> open fd holding the lock


class ResultsLocked(RuntimeError):
    """Another live run holds the results folder."""


def _holder_text(info: dict) -> str:
    if not info:
        return "a process that left no details"
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.get("started", 0)))
    return (
        f"pid {info.get('pid')} on host {info.get('host')}, working directory {info.get('cwd')}, "
        f"started {started}: {info.get('command')}"
    )


def read_holder(folder) -> dict:
    """The holder recorded in folder/.lock ({} when none or unreadable)."""
    try:
        return json.loads(Results(folder).lock.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _alive_here(info: dict) -> bool:
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return info["pid"] != os.getpid()


def _refuse(folder: Path, info: dict):
    raise ResultsLocked(
        f"results folder {folder} is in use by another run ({_holder_text(info)}). Two runs writing one "
        "results folder would download and prepare the same files twice. Wait for that run to finish or "
        f"stop it, or set config key results to another folder. (The lock is {Results(folder).lock}; it is "
        "released when its process ends.)"
    )


def acquire(folder) -> Path:
    """Hold folder/.lock for the rest of this process, or raise ResultsLocked naming the holder."""
    folder = Path(folder).resolve()
    path = Results(folder).lock
    if str(folder) in _held:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            os.close(fd)
            _refuse(folder, read_holder(folder))
        # No flock on this filesystem: the recorded holder decides.
        if _alive_here(read_holder(folder)):
            os.close(fd)
            _refuse(folder, read_holder(folder))
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "cwd": os.getcwd(),
        "started": round(time.time(), 3),
        "command": " ".join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    _held[str(folder)] = fd
    return path


def release(folder) -> None:
    """Give the lock up (also happens by itself when the process ends)."""
    fd = _held.pop(str(Path(folder).resolve()), None)
    if fd is not None:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
