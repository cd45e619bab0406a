"""One run at a time per results folder (convscope/results_lock.py), through real snakemake runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, tiny_config
from convscope import results_lock
from convscope.layout import Results

HOLD = (
    "import sys, time; from convscope import results_lock; results_lock.acquire(sys.argv[1]); "
    "print('holding', flush=True); time.sleep(120)"
)


@pytest.fixture
def holder():
    """Start a second process holding a folder's lock; kill it afterwards."""
    procs = []

    def start(folder):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "holding"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_second_run_is_refused_naming_the_folder_and_the_holder(workflow, holder):
    wf = workflow(tiny_config(images=4))
    other = holder(wf.results)
    target = str(wf.layout.crawl_summary("circle"))
    proc = wf.run(target, check=False)
    assert proc.returncode != 0
    assert f"results folder {wf.results.resolve()} is in use by another run" in proc.stderr
    assert f"pid {other.pid} on host {socket.gethostname()}" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert sorted(p.name for p in wf.results.iterdir()) == [".lock"]  # nothing crawled
    # A dry run does not lock: it writes nothing and may look at a run in progress.
    assert wf.planned(target) == {"crawl": 1}
    # Once the holder is gone, the same run goes through and leaves the lock free.
    other.kill()
    other.wait()
    wf.run(target)
    assert wf.tree.crawl_summary("circle").exists()
    assert results_lock.acquire(wf.results)
    results_lock.release(wf.results)


def test_two_snakemake_runs_from_two_folders_on_one_results_folder(workflow, tmp_path):
    """The case Snakemake's own lock misses: two working directories, one `results:` folder."""
    shared = tmp_path / "shared-results"
    first, second = (workflow(tiny_config(images=400, image_size=96, results=str(shared)), name=n) for n in "ab")
    target = str(Results(shared).crawl_summary("circle"))
    running = subprocess.Popen(
        first.command(target),
        cwd=first.workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while results_lock.read_holder(shared).get("pid") != running.pid:
            assert time.monotonic() < deadline and running.poll() is None, "the first run did not take the lock"
            time.sleep(0.05)
        # Freeze the first run while it holds the lock, so it cannot finish before the second one
        # looks (on a loaded machine a 400-image crawl ends before a second snakemake has started).
        os.killpg(running.pid, signal.SIGSTOP)
        try:
            proc = second.run(target, check=False)
        finally:
            os.killpg(running.pid, signal.SIGCONT)
        assert proc.returncode != 0
        assert f"results folder {shared} is in use by another run (pid {running.pid}" in proc.stderr
        assert f"working directory {first.workdir}" in proc.stderr
        assert running.wait(timeout=120) == 0  # the first run is not disturbed
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
            running.wait()
    ledger = Results(shared).ledger("circle").read_text().splitlines()
    assert len(ledger) == 1 + 400  # header + one row per image: nothing downloaded twice


def test_lock_left_by_a_dead_run_is_taken_over(workflow):
    wf = workflow(tiny_config(images=4))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    wf.results.mkdir()
    stale = {
        "pid": int(dead.stdout),
        "host": socket.gethostname(),
        "cwd": "/elsewhere",
        "started": 0,
        "command": "x",
    }
    (wf.results / ".lock").write_text(json.dumps(stale))
    wf.run(str(wf.layout.crawl_summary("circle")))
    assert wf.tree.crawl_summary("circle").exists()
    assert results_lock.read_holder(wf.results) == {}  # taken over, then released at the end of the run


def test_acquire_twice_in_one_process_and_holder_details(tmp_path):
    folder = tmp_path / "results"
    path = results_lock.acquire(folder)
    try:
        assert results_lock.acquire(folder) == path  # re-entrant within the holder
        info = results_lock.read_holder(folder)
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname() and info["cwd"] == os.getcwd()
    finally:
        results_lock.release(folder)
    assert results_lock.read_holder(folder) == {}
