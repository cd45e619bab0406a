"""A full disk at every stage says so in one line (convscope.faults), through real
snakemake runs with the results folder on a small tmpfs.

One walk through the pipeline: each stage's inputs are made with room to spare, then
the disk is filled to the last byte and the stage's own outputs are asked for. Mounting
needs root; elsewhere the test is skipped with the reason (the small_disk fixture).
"""

from __future__ import annotations

import copy
import os

from test_faults import small_disk  # noqa: F401 - the fixture

from conftest import quick_analysis, tiny_config
from convscope import config as cfg
from convscope import grid

TRAIN = {
    "strategies": ["scratch"],
    "grid": {"learning_rate": [0.001], "batch_size": [16], "epochs": [1], "augment": ["none"]},
    "threads": 1,
    "bootstrap": 100,
    "tensorboard": False,
}


def _fill(disk, leave: int = 1):
    """Take all but `leave` pages of `disk` with one file; returns it (delete it to free the disk).

    The page left is for the results lock's line (convscope.results_lock), written before any job.
    """
    filler = disk / "filler.bin"
    st = os.statvfs(disk)
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, (st.f_bavail - leave) * st.f_frsize)
    return filler


def _assert_one_line(proc, stage: str) -> None:
    """Exit non-zero, one `error:` line saying the disk is full, no traceback (nor logging's own)."""
    err = proc.stderr
    assert proc.returncode != 0, f"{stage}: exit 0 on a full disk\n{err[-3000:]}"
    assert "Traceback" not in err and "Logging error" not in err and 'File "' not in err, f"{stage}:\n{err[-5000:]}"
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and ("disk full" in errors[0] or "not enough disk space" in errors[0]), (
        f"{stage}:\n{err[-5000:]}"
    )


def test_disk_full_at_every_stage_is_one_line(workflow, small_disk):  # noqa: F811
    disk = small_disk("96m")
    config = tiny_config(
        images=20,
        backbones={"mobilenetv2": {"input_size": 32, "weights": "none"}},
        train=TRAIN,
        analysis=quick_analysis(),
        report={"title": "disk", "sections": ["findings", "data", "grid", "backbones"], "self_contained": False},
        results=str(disk / "results"),
    )
    wf = workflow(config)
    L = wf.tree
    (run,) = grid.runs(cfg.load_and_validate(copy.deepcopy(config)))
    b = run.backbone
    stages = [
        ("crawl", [], [L.crawl_summary(c) for c in ("circle", "square", "triangle")]),
        ("clean", [], [L.clean_manifest]),
        ("split", [], L.split_lists),
        ("prepare", [], L.prepared_files(32)),
        ("train", [L.prepared_files(32)], [L.fit(b, run.id)]),
        ("analyse", [L.metrics(b, run.id), L.grid_index], [L.analysis_index(b, run.id)]),
        ("report", ["--omit-from", "report"], [L.report_page]),
    ]
    before = []
    for stage, extra, targets in stages:
        prereq = [str(p) for x in extra for p in (x if isinstance(x, list) else [x])]
        if before or prereq:
            made = wf.run(*before, *prereq, check=False)
            assert made.returncode == 0, f"before {stage}:\n{made.stderr[-4000:]}"
        filler = _fill(disk)
        # One core: the first job that meets the full disk stops the run (drawn classes
        # crawl two at a time on two cores, and each failed job says it in its own line).
        proc = wf.run(*map(str, targets), check=False, cores=1)
        _assert_one_line(proc, stage)
        filler.unlink()
        before = [str(t) for t in targets]
