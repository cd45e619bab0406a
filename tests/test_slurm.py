"""The workflow on a real SLURM cluster: one node on 127.0.0.1 with one (fake) GPU.

tests/slurm/cluster.sh installs Debian's slurm-wlm and munge when missing and starts
slurmctld + slurmd. Snakemake then runs a reduced demo with the cluster profiles
(`--workflow-profile profiles/slurm --profile profiles/slurm-test`), through
snakemake-executor-plugin-slurm installed for this test only (a --target folder on
PYTHONPATH: installed into .venv, the plugin would cost every other test's snakemake
call seconds). While the training job runs, the test cancels it with `scancel` once
an epoch is backed up; the profile's retry must resume from that epoch and finish.

Needs root, Debian and apt (or SLURM already installed); skipped with the reason
otherwise. The cluster is machine-wide, so a file lock keeps concurrent pytest
sessions apart, and this module holds a single test (pytest-xdist runs it in one
worker).
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SNAKEFILE, SNAKEMAKE
from convscope import layout
from convscope.layout import Results

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
LOCK = Path("/var/lib/convscope-slurm.test.lock")
EPOCHS = 20
# A run's training and evaluation are one SLURM job (group "run", rules/train.smk): the
# plugin names it by the group and its rules, in the job's comment and its log folder.
TRAIN_JOB, TRAIN_LOGS = "rule_run_evaluate_train", "group_run_evaluate_train"

CONFIG = {
    "seed": 7,
    "classes": {"circle": {}, "square": {}, "triangle": {}},
    "crawl": {"source": "synthetic", "max_images": 40, "synthetic": {"size": 64}},
    "clean": {"min_side": 16},
    "split": {"train": 0.6, "val": 0.2, "test": 0.2},
    "prepare": {"resize": "center_crop"},
    "backbones": {"alexnet": {"input_size": 32, "weights": "none"}},
    "train": {
        "backend": "jax",  # starts in ~1 s where TensorFlow takes 5-15 s, in every Keras job
        "strategies": ["finetune"],
        # Enough epochs (~1-2 s each here) to cancel the job between two of them.
        "grid": {
            "learning_rate": [0.001],
            "dropout": [0.2],
            "tune_depth": [1],
            "batch_size": [8],
            "epochs": [EPOCHS],
            "augment": ["none"],
        },
        "threads": 1,
        "mem_mb": 1000,
        "runtime": 20,
        "bootstrap": 100,
        "tensorboard": False,
    },
    "analysis": {
        "sample_images": 3,
        "examples": {"per_class": 2, "mistakes": 3},
        "embedding": {"thumbnails": 10},
        "activations": {"channels": 4},
        # Grad-CAM and occlusion stay; the costly explanations (minutes on a busy CPU)
        # add nothing to what this test is about: jobs on a cluster.
        "saliency": {"enabled": False},
        "filter_vis": {"enabled": False},
        "change": {"enabled": False},
        "checks": {"enabled": False},
        "threads": 1,
        "mem_mb": 1000,
        "runtime": 20,
    },
}


def cannot_run() -> str | None:
    if sys.platform != "linux" or not Path("/etc/debian_version").exists():
        return "needs Debian (slurm-wlm and munge from apt)"
    if os.geteuid() != 0:
        return "needs root to install SLURM and start its daemons"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is missing"
    conf = Path("/etc/slurm/slurm.conf")
    if conf.exists() and "written by convscope tests/slurm/cluster.sh" not in conf.read_text().splitlines()[0]:
        return f"{conf} belongs to a real SLURM installation; the test cluster would replace it"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = cannot_run()
    if reason:
        pytest.skip(reason)
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session's SLURM test finishes first
        start = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=900)
        if start.returncode == 3:
            pytest.skip(f"apt could not install SLURM: {start.stderr.strip()[-500:]}")
        assert start.returncode == 0, f"cluster.sh start failed:\n{start.stdout[-2000:]}\n{start.stderr[-3000:]}"
        try:
            yield
        finally:
            subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, text=True, timeout=300)


def slurm_extra() -> list[str]:
    """The `[slurm]` extra of the installed convscope (pyproject.toml: one place for the pin)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    reqs = [Requirement(r) for r in metadata.requires("convscope") or []]
    extra = [
        str(r).split(";")[0]
        for r in reqs
        if r.marker and r.marker.evaluate({"extra": "slurm"}) and not r.marker.evaluate({"extra": ""})
    ]
    assert extra, "convscope's [slurm] extra is empty: pyproject.toml lists the SLURM executor plugin there"
    return extra


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    """A folder for PYTHONPATH holding the SLURM executor plugin, or "" if .venv has it.

    Installs the `[slurm]` extra and, recursively, whichever of its requirements
    .venv does not already satisfy (the jobstep plugin), each without dependencies,
    so that nothing in the folder shadows a package of .venv.
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name as canonical

    def satisfied(req: Requirement) -> bool:
        try:
            return req.specifier.contains(metadata.version(req.name), prereleases=True)
        except metadata.PackageNotFoundError:
            return False

    wanted = [Requirement(r) for r in slurm_extra()]
    if all(satisfied(r) for r in wanted):
        return ""
    target = tmp_path_factory.mktemp("slurm-plugin")
    seen = set()
    while wanted:
        req = wanted.pop()
        if req.name in seen or (req.marker and not req.marker.evaluate({"extra": ""})) or satisfied(req):
            continue
        seen.add(req.name)
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(req)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if pip.returncode != 0:
            pytest.skip(f"pip could not install {req}: {pip.stderr.strip()[-500:]}")
        (dist,) = [
            d
            for d in metadata.distributions(path=[str(target)])
            if canonical(d.metadata["Name"]) == canonical(req.name)
        ]
        wanted += [Requirement(r) for r in dist.requires or []]
    return str(target)


def squeue(*args: str) -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, timeout=30)
    return [line.split("|") for line in out.stdout.splitlines() if line.strip()]


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def backed_up_epochs(models: Path) -> int:
    """Epochs the (only) training run has backed up so far."""
    from convscope.training.callbacks import backup_epoch

    for folder in models.glob("alexnet/*/backup/phase0"):
        epoch = backup_epoch(folder)
        if epoch is not None:
            return epoch
    return 0


def test_workflow_on_slurm_resumes_a_cancelled_training_job(plugin_path, cluster, tmp_path):
    workdir = tmp_path / "wf"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    results = workdir / "results"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [plugin_path, env.get("PYTHONPATH")]))
    env.pop("SLURM_CONF", None)
    command = [
        str(SNAKEMAKE),
        "-s",
        str(SNAKEFILE),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--workflow-profile",
        str(REPO / "profiles" / "slurm"),
        "--profile",
        str(REPO / "profiles" / "slurm-test"),
    ]
    log_path = workdir / "snakemake.out"
    started = time.monotonic()
    with log_path.open("w") as out:
        proc = subprocess.Popen(command, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env)
        cancelled, cancelled_at = None, None
        try:
            deadline = started + 600
            while proc.poll() is None and time.monotonic() < deadline:
                if cancelled is None:
                    # The plugin writes the rule and wildcards into the job's comment (%k).
                    running = [job for job, comment in squeue("-t", "R", "-o", "%i|%k") if TRAIN_JOB in comment]
                    epochs = backed_up_epochs(Results(results).models_dir)
                    if running and epochs >= 1:
                        subprocess.run(["scancel", running[0]], check=True, timeout=30)
                        cancelled, cancelled_at = running[0], epochs
                time.sleep(0.5)
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
    wall = time.monotonic() - started
    output = log_path.read_text()
    print(f"workflow on SLURM: {wall:.0f} s wall")
    assert proc.returncode == 0, f"snakemake on SLURM failed:\n{output[-6000:]}"
    assert cancelled is not None, f"the training job was never seen running with an epoch backed up:\n{output[-4000:]}"

    # The cancelled job really was cancelled by SLURM (squeue keeps finished jobs for MinJobAge).
    state = squeue("-t", "all", "-j", cancelled, "-o", "%i|%T")
    assert state == [[cancelled, "CANCELLED"]], state
    # Snakemake saw the group job fail and named its SLURM log, which says why.
    cancelled_log = workdir / ".snakemake" / "slurm_logs" / TRAIN_LOGS / f"{cancelled}.log"
    assert "Error in group run" in output and str(cancelled_log) in output, output[-4000:]
    assert f"JOB {cancelled} ON" in cancelled_log.read_text() and "CANCELLED" in cancelled_log.read_text()

    # The retry resumed from the backup instead of starting over, and finished.
    (run_dir,) = Results(results).backbone_models("alexnet").iterdir()
    metrics = json.loads((run_dir / layout.METRICS).read_text())
    assert cancelled_at <= metrics["resumed_from_epoch"] < EPOCHS, metrics["resumed_from_epoch"]
    assert metrics["epochs_trained"] == EPOCHS
    with (run_dir / layout.HISTORY).open(newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(EPOCHS))
    train_log = Results(results).log("train", "alexnet", run_dir.name).read_text()
    assert f"resuming at epoch {metrics['resumed_from_epoch']}" in train_log
    assert not (run_dir / "backup").exists()

    # Every stage ran as SLURM jobs and produced its outputs.
    for split in ("train", "val", "test"):
        assert Results(results).prepared("32", split).stat().st_size > 0
    assert (run_dir / layout.MODEL).stat().st_size > 0
    assert Results(results).grid_index.exists()
    assert list(Results(results).backbone_analyses("alexnet").glob("*/index.json"))
    assert Results(results).report_page.stat().st_size > 0
    slurm_logs = workdir / ".snakemake" / "slurm_logs"
    ran = {p.name for p in slurm_logs.iterdir()}
    assert {TRAIN_LOGS, "rule_summarise", "rule_analyse", "rule_report"} <= ran, ran
    # The data stages (group "data": clean and split by the rules, crawl and prepare
    # added by the test profile) ran as one SLURM job.
    assert [name for name in ran if name.startswith("group_data")], ran
    assert not {"rule_crawl", "rule_clean", "rule_split", "rule_prepare"} & ran, ran
    # Nothing of the cancelled job outlived it (minutes ago; SLURM kills the job's process group).
    left = [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and int(pid) != os.getpid() and str(workdir).encode() in _cmdline(pid)
    ]
    assert not left, [_cmdline(pid)[:300] for pid in left]
    # The training job asked SLURM for the GPU: resources gpu=1 became --gpus=1.
    train_jobs = [p.stem for p in (slurm_logs / TRAIN_LOGS).rglob("*.log")]
    assert cancelled in train_jobs and len(train_jobs) == 2, train_jobs
    retry = next(j for j in train_jobs if j != cancelled)
    shown = subprocess.run(["scontrol", "show", "job", retry], capture_output=True, text=True).stdout
    assert "gres/gpu=1" in shown or "gpu:1" in shown, shown
