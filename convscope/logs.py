"""Logging for workflow jobs: one log file per job, progress on stderr too.

Snakemake deletes a job's log file before each attempt, so every line also goes to
`<log stem>.attempts.log` beside it, appended under a header per attempt: the lines of
an attempt that was killed (kill -9, a node lost) are still there after the rerun.
A failure's traceback goes to the log file; a full disk or a stated failure (a
diverged run) shows on stderr as one line (convscope.faults) instead of a page of
chained tracebacks.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import time
import traceback

from convscope import faults


class _JobFile(logging.FileHandler):
    """The job's log file. On a full disk its lines are lost: noted, said once at the job's end (`lost_note`).

    Writes, flushes and the close all fail then; each would otherwise print a traceback
    (logging's own "--- Logging error ---", and chained ones from close()).
    """

    failed: str | None = None

    def handleError(self, record):
        self.failed = self.failed or str(sys.exc_info()[1])

    def flush(self):
        try:
            super().flush()
        except OSError as e:
            self.failed = self.failed or str(e)

    def close(self):
        try:
            super().close()
        except OSError as e:
            self.failed = self.failed or str(e)


def lost_note(handlers) -> str | None:
    """One line naming the job's log files that could not be written, if any."""
    lost = [h for h in handlers if isinstance(h, _JobFile) and h.failed]
    if not lost:
        return None
    names = " and ".join(h.baseFilename for h in lost)
    return f"log file {names} could not be written ({lost[0].failed}); its lines went to stderr only"


def attempts_path(path) -> str:
    """Where every attempt's lines of log file `path` are kept: x.log -> x.attempts.log."""
    root, ext = os.path.splitext(str(path))
    return f"{root}.attempts{ext or '.log'}"


def _open_logs(path: str) -> list[_JobFile]:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    handlers = [_JobFile(path, mode="a"), _JobFile(attempts_path(path), mode="a")]
    for h in handlers:
        h.stream.write(f"==== attempt started {stamp} (pid {os.getpid()}) ====\n")
    return handlers


@contextlib.contextmanager
def job_log(path: str | None, name: str = "convscope"):
    """Send `logging` output to the job's log file and stderr; record a failure's traceback."""
    console = logging.StreamHandler(sys.stderr)
    handlers = [console]
    if path:
        try:
            handlers += _open_logs(path)
        except OSError as e:  # a full disk may refuse even the new log file
            print(
                f"log file {path} cannot be opened ({e.strerror}); log lines go to stderr only",
                file=sys.stderr,
            )
            path = None
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(logging.INFO)
    say_lost = True
    try:
        yield logging.getLogger(name)
    except Exception as e:
        line = faults.one_line(e)
        if line is None:
            root.error("job failed:\n%s", traceback.format_exc())
            raise
        # A full disk or a stated failure: the traceback for the log file, one line for the person.
        root.removeHandler(console)
        root.error("job failed: %s\n%s", line, traceback.format_exc())
        say_lost = False
        # Objects that failed to write (Keras' HDF5 files) complain again when freed,
        # now or at exit: those complaints go to the log file only.
        sys.unraisablehook = _unraisable
        gc.collect()
        _close(root, handlers, say_lost)
        lost = any(isinstance(h, _JobFile) and h.failed for h in handlers)
        where = f" (traceback in {path})" if path and not lost else ""
        # Printed here, once, as the one console line; SystemExit carries only the status.
        print(f"error: {line}{where}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        _close(root, handlers, say_lost)


def _unraisable(args) -> None:
    if faults.is_full_disk_noise(args.exc_value):
        logging.getLogger(__name__).info("after the full disk, ignored: %s", args.exc_value)
        return
    sys.__unraisablehook__(args)


def _close(root, handlers, say_lost: bool) -> None:
    """Detach and close the job's handlers (again is harmless); say which log files lost lines."""
    for h in handlers:
        root.removeHandler(h)
        h.close()
    note = lost_note(handlers) if say_lost else None
    if note:
        print(note, file=sys.stderr, flush=True)
