"""Logging for workflow jobs: one log file per job, progress on stderr too."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback


@contextlib.contextmanager
def job_log(path: str | None, name: str = "convscope"):
    """Send `logging` output to the job's log file and stderr; record a failure's traceback."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if path:
        handlers.append(logging.FileHandler(path, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(logging.INFO)
    try:
        yield logging.getLogger(name)
    except Exception:
        root.error("job failed:\n%s", traceback.format_exc())
        raise
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()
