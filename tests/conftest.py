"""Shared test helpers: tiny configs and real `snakemake` runs in a temporary folder.

Workflow tests write a config to tmp_path and run the real Snakefile there:

    def test_something(workflow):
        wf = workflow(tiny_config(classes=("circle", "square")))
        wf.run(*wf.prepared("48"))             # raises with the log tail on failure
        assert wf.planned(*wf.prepared("48")) == {}   # nothing left to do
        wf.tree.prepared("48", "train")

Paths under `results` are relative to the temporary folder (snakemake --directory).
"""

from __future__ import annotations

import copy
import csv
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from convscope.layout import Results

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "Snakefile"
# The snakemake of the interpreter running the tests (the project's .venv).
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


# The files that take longest, longest first (each 2-8 min in the suite on 2 cores). The
# Makefile passes --no-loadscope-reorder, so xdist hands files out in this order: the long
# ones start at once and the short ones fill in behind them. Its default order (most tests
# first) started the 8-minute native-size run late, and the suite waited on it alone.
LONGEST_FILES = (
    "test_native_sizes.py",
    "test_demo.py",
    "test_slurm.py",
    "test_workflow_analyse.py",
    "test_disk_full_stages.py",
    "test_review_reruns.py",
    "test_report.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable: tests keep their order within a file


def tiny_config(
    classes=("circle", "square", "triangle"),
    *,
    images: int = 20,
    image_size: int = 64,
    input_size: int = 48,
    backbones: dict | None = None,
    **sections,
) -> dict:
    """A small offline config: synthetic classes, one small backbone input size.

    Extra keyword arguments replace whole top-level sections (e.g. prepare={...}).
    """
    config = {
        "report": {"title": "test run"},
        "seed": 7,
        "classes": {name: {} for name in classes},
        "crawl": {"source": "synthetic", "max_images": images, "synthetic": {"size": image_size}},
        "clean": {"min_side": 16},
        "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "prepare": {"resize": "center_crop"},
        "backbones": backbones if backbones is not None else {"mobilenetv2": {"input_size": input_size}},
    }
    config.update(copy.deepcopy(sections))
    return config


def quick_train() -> dict:
    """The cheapest grid that still trains: one finetune epoch and one logreg features head."""
    return {
        "strategies": ["finetune", "features"],
        "grid": {"learning_rate": [0.001], "epochs": [1], "batch_size": [16], "augment": ["none"]},
        "features": {"classifiers": ["logreg"], "C": [1.0]},
        "threads": 1,
        "bootstrap": 100,
        "tensorboard": False,
    }


def quick_analysis() -> dict:
    """Every analysis and explanation on, at sizes that keep a test short."""
    return {
        "sample_images": 3,
        "examples": {"per_class": 2, "mistakes": 3},
        "embedding": {"thumbnails": 10},
        "activations": {"channels": 4},
        "saliency": {"smoothgrad_samples": 4},
        "filter_vis": {"channels": 2, "steps": 16},
        "checks": {"max_images": 12, "deletion_steps": 4},
        "gpu": False,
    }


class SnakemakeError(AssertionError):
    pass


@dataclass
class Workflow:
    """The project's Snakefile run in its own folder on one config file."""

    workdir: Path
    config: dict

    @property
    def configfile(self) -> Path:
        return self.workdir / "config.yaml"

    @property
    def results(self) -> Path:
        return self.workdir / self.config.get("results", "results")

    def write_config(self, config: dict | None = None) -> Path:
        if config is not None:
            self.config = config
        self.configfile.write_text(yaml.safe_dump(self.config, sort_keys=False))
        return self.configfile

    @property
    def layout(self) -> Results:
        """The results tree (convscope.layout), relative to workdir: its paths are targets for run/planned."""
        return Results(self.config.get("results", "results"))

    @property
    def tree(self) -> Results:
        """The same tree at its absolute place: for reading what a run wrote."""
        return Results(self.results)

    @property
    def splits(self) -> list[str]:
        """The split stage's lists, relative to workdir (targets for run/planned)."""
        return [str(p) for p in self.layout.split_lists]

    def split_rows(self) -> list[dict]:
        """Every row of the split lists a run wrote (cls, file, sha256, cluster, split)."""
        rows = []
        for path in self.tree.split_lists:
            with open(path, newline="") as f:
                rows += list(csv.DictReader(f))
        return rows

    def prepared(self, size) -> list[str]:
        """The files of one prepare job, relative to workdir (targets for run/planned)."""
        return [str(p) for p in self.layout.prepared_files(size)]

    def command(self, *args: str, cores: int = 2) -> list[str]:
        return [
            str(SNAKEMAKE),
            "-s",
            str(SNAKEFILE),
            "--directory",
            str(self.workdir),
            "--configfile",
            str(self.configfile),
            "--cores",
            str(cores),
            *args,
        ]

    def run(self, *args: str, check: bool = True, cores: int = 2, timeout: float = 600):
        """Run snakemake with `args` (targets and flags); on failure show the job logs."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(
            self.command(*args, cores=cores),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and proc.returncode != 0:
            raise SnakemakeError(
                f"snakemake {' '.join(args)} failed with exit code {proc.returncode}\n"
                f"--- stderr (tail)\n{proc.stderr[-4000:]}\n--- job logs\n{self.log_tail()}"
            )
        return proc

    def planned(self, *targets: str) -> dict[str, int]:
        """Jobs a dry run would execute for `targets`: {rule: count}, {} if nothing to do."""
        proc = self.run("-n", *targets)
        return parse_job_stats(proc.stdout + proc.stderr)

    def log_tail(self, chars: int = 3000) -> str:
        logs = sorted(self.tree.logs.rglob("*.log")) if self.tree.logs.exists() else []
        logs = [p for p in logs if not p.name.endswith(".attempts.log")]  # the same lines, all attempts
        return "\n".join(f"[{p.relative_to(self.workdir)}]\n{p.read_text()[-chars:]}" for p in logs)


def parse_job_stats(output: str) -> dict[str, int]:
    """The 'Job stats' table of snakemake's output as {rule: count} (without 'total')."""
    match = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+\d+", output, re.S)
    if not match:
        if "Nothing to be done" in output:
            return {}
        raise AssertionError(f"no job stats in snakemake output:\n{output[-3000:]}")
    stats = {}
    for line in match.group(1).splitlines():
        name, count = line.split()
        stats[name] = int(count)
    return stats


@pytest.fixture
def workflow(tmp_path):
    """Factory: workflow(config) -> Workflow writing config.yaml into its own tmp folder."""
    made = []

    def make(config: dict, name: str = "wf") -> Workflow:
        workdir = tmp_path / name
        workdir.mkdir(parents=True, exist_ok=True)
        wf = Workflow(workdir, copy.deepcopy(config))
        wf.write_config()
        made.append(wf)
        return wf

    return make
