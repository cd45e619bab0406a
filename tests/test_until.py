"""`snakemake --until prepare` on a fresh results folder: Snakemake ends after the split
checkpoint (exit 0); the workflow says why and what to run, and the second call prepares."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_config


def test_until_past_split_says_why_it_stopped_and_the_second_call_goes_on(workflow):
    wf = workflow(tiny_config())
    first = wf.run("--until", "prepare")
    prepared = [wf.workdir / p for p in wf.prepared(48)]
    assert not any(p.exists() for p in prepared), "Snakemake now goes past split: drop convscope/until.py"
    assert all(Path(wf.workdir / p).exists() for p in wf.splits)
    assert "stopped after the split checkpoint, before prepare" in first.stderr, first.stderr[-3000:]
    assert "run the same command again" in first.stderr
    second = wf.run("--until", "prepare")
    assert all(p.exists() for p in prepared), second.stderr[-3000:]
    assert "stopped after" not in second.stderr
    assert wf.planned("--until", "prepare") == {}
