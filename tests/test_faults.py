"""A full disk, through real snakemake runs on a small tmpfs: one clear line, the traceback in the log.

Mounting needs root; elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, tiny_config
from convscope import faults
from convscope.layout import Results


@pytest.fixture
def small_disk(tmp_path):
    """mount(size): a tmpfs of `size` (e.g. "3m") at a fresh folder; unmounted afterwards."""
    mounted = []

    def mount(size: str):
        if os.geteuid() != 0:
            pytest.skip("needs root to mount a small tmpfs (a disk that fills up)")
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def assert_one_clear_line(proc, *texts):
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for text in texts:
        assert text in proc.stderr, f"{text!r} missing from:\n{proc.stderr[-4000:]}"
    assert "Traceback" not in out and "SIGBUS" not in out and "Logging error" not in out, out[-4000:]


def test_prepare_checks_free_space_before_the_memmaps(workflow, small_disk):
    disk = small_disk("3m")
    config = tiny_config(images=20, image_size=64, input_size=224, results=str(disk / "results"))
    wf = workflow(config)
    wf.run("--until", "split")  # raw images and splits fit (well under 1 MB)
    train = sum(r["split"] == "train" for r in wf.split_rows())  # 3 MB hold fewer than 20 at 224x224
    proc = wf.run(*map(str, wf.layout.prepared_split_files(224, "train")), check=False)
    folder = Results(disk / "results").prepared_dir("224")
    assert_one_clear_line(
        proc,
        f"not enough disk space in {folder} for the arrays of {train} images at 224x224",
        "needed",
        "free",
    )
    log = Results(disk / "results").log("prepare", "224", "train").read_text()
    assert "Traceback" in log and "NoSpace" in log
    assert not list(folder.glob("*.npy")) and not list(folder.glob(".tmp-*"))  # nothing half-written


def test_memmap_blocks_are_reserved_before_writing(small_disk):
    """The disk fills between the free-space check and the writes: an error naming the file, not a SIGBUS."""
    disk = small_disk("1m")
    path = disk / ".tmp-train.npy"
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(40, 96, 96, 3))  # 1.1 MB, sparse
    with pytest.raises(faults.NoSpace) as err:
        faults.reserve(path)
    del images
    assert f"not enough disk space in {disk} for .tmp-train.npy: 1.1 MB" in str(err.value)
    small = disk / "small.npy"
    np.lib.format.open_memmap(small, mode="w+", dtype=np.uint8, shape=(4, 96, 96, 3))
    faults.reserve(small)  # fits: the blocks are allocated
    assert os.stat(small).st_blocks * 512 >= os.path.getsize(small)


def test_disk_full_while_crawling_is_one_line(workflow, small_disk):
    disk = small_disk("160k")
    config = tiny_config(images=200, image_size=96, results=str(disk / "results"))
    wf = workflow(config)
    proc = wf.run(f"{disk}/results/raw/circle/crawl.json", check=False)
    assert_one_clear_line(
        proc,
        "disk full while writing",
        str(Results(disk / "results").raw("circle")),
        "free in",
    )


def test_disk_full_in_any_job_log_keeps_the_traceback(tmp_path, small_disk):
    """Outside Snakemake: a job writing past the end of its disk, its log on a disk with room."""
    disk = small_disk("64k")
    log = tmp_path / "job.log"
    code = (
        "import sys; from convscope.logs import job_log\n"
        "with job_log(sys.argv[1]):\n"
        "    with open(sys.argv[2], 'wb') as out:\n"
        "        out.write(b'x' * 1_000_000)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(log), str(disk / "big.bin")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert proc.returncode == 1
    expected = (
        f"error: disk full while writing {disk / 'big.bin'} (No space left on device): "
        f"{faults.human(faults.free_bytes(disk))} free in {disk}; free some space there or set config key "
        f"results to a folder on a larger disk, then run again (traceback in {log})"
    )
    assert proc.stderr.strip().splitlines() == [expected]
    assert "Traceback" in log.read_text() and "OSError" in log.read_text()


def test_killed_attempts_log_lines_are_kept(workflow):
    """kill -9 of the whole run mid-crawl; then --unlock and run again (README): both attempts' lines kept."""
    wf = workflow(tiny_config(images=400, image_size=96))
    target = str(wf.layout.crawl_summary("circle"))
    log = wf.tree.log("crawl", "circle")
    attempts = log.with_name("circle.attempts.log")
    run = subprocess.Popen(
        wf.command(target), cwd=wf.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (attempts.exists() and "source synthetic" in attempts.read_text()):
            assert time.monotonic() < deadline and run.poll() is None, "the crawl did not start"
            time.sleep(0.05)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert not wf.tree.crawl_summary("circle").exists()
    assert "LockException" in wf.run(target, check=False).stderr  # Snakemake's own lock, left by the kill
    wf.run("--unlock")
    wf.run(target)
    kept = attempts.read_text()
    assert kept.count("==== attempt started") == 2, kept
    assert kept.count("class circle: source synthetic") == 2  # the killed attempt's lines too
    assert kept.count("class circle: done") == 1
    assert log.read_text().count("==== attempt started") == 1  # Snakemake's log: this attempt only


def test_human_sizes():
    assert faults.human(512) == "512 bytes"
    assert faults.human(4_608_000) == "4.6 MB (4608000 bytes)"
