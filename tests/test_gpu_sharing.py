"""Several jobs per GPU: train.jobs_per_gpu schedules training jobs and caps their GPU memory.

On CPU the "GPU" is Snakemake's gpu_share resource (profiles/default: one GPU =
100), and the cap is what the job's environment says (metrics.json job_env, the
variables the backends read when their runtime starts). Also: features heads
never wait for the GPU, an out-of-memory error names the key to lower and its
retry resumes from the epoch backup.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys

import pytest

from convscope import backend as backend_lib
from convscope import config as cfg
from convscope import grid
from convscope.layout import Results
from tests.conftest import REPO, tiny_config
from tests.test_training import CLASSES, hp, write_prepared

TRAIN = {
    "backend": "jax",  # no TensorFlow import: seconds per job on CPU
    "strategies": ["finetune", "features"],
    "grid": {
        "learning_rate": [0.001, 0.0001],
        "dropout": [0.2],
        "tune_depth": [1],
        "batch_size": [16],
        "epochs": [1],
        "augment": ["none"],
    },
    "features": {"classifiers": ["logreg"], "C": [1.0], "batch_size": 32},
    "threads": 1,
    "bootstrap": 100,
    "tensorboard": False,
    "gpu": True,
}


def make_config(jobs_per_gpu: int) -> dict:
    return tiny_config(
        classes=("circle", "square", "triangle"),
        images=12,
        image_size=48,
        backbones={"alexnet": {"input_size": 32, "weights": "none"}},
        train={**copy.deepcopy(TRAIN), "jobs_per_gpu": jobs_per_gpu},
    )


def targets(config, strategies) -> list[str]:
    validated = cfg.load_and_validate(copy.deepcopy(config))
    res = Results(validated["results"])  # relative to the workdir: targets
    return [str(res.metrics(r.backbone, r.id)) for r in grid.runs(validated) if r.strategy in strategies]


def intervals(results, rule: str) -> list[tuple[float, float]]:
    """(start, end) wall-clock times of the rule's jobs, from their benchmark files."""
    spans = []
    for tsv in Results(results).benchmarks.joinpath(rule).rglob("*.tsv"):
        with tsv.open() as f:
            wall = float(next(csv.DictReader(f, delimiter="\t"))["s"])
        end = tsv.stat().st_mtime
        spans.append((end - wall, end))
    return sorted(spans)


def overlap(a, b) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


@pytest.mark.slow
def test_jobs_share_a_gpu_as_configured_with_memory_caps_and_heads_never_wait(workflow):
    config = make_config(jobs_per_gpu=2)
    wf = workflow(config)
    trained = targets(config, {"finetune"})
    wf.run(*trained, cores=2)
    (a, b) = intervals(wf.results, "train")
    assert overlap(a, b) > 0, f"jobs_per_gpu=2: the two training jobs should run at once: {a}, {b}"
    for target in trained:
        env = json.loads((wf.workdir / target).read_text())["job_env"]
        assert env["CONVSCOPE_JOBS_PER_GPU"] == "2"
        assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450"  # 0.9 of the GPU / 2
        assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"

    # Scheduling is not a result: changing it re-runs nothing.
    config = make_config(jobs_per_gpu=1)
    wf.write_config(config)
    assert wf.planned(*trained) == {}

    # One job per GPU: trainings one at a time; the embeddings go first and the head
    # (no GPU claim) runs beside a GPU job (an embedding or a training) on the second core.
    for f in wf.workdir.glob(str(wf.layout.benchmark("train", "*", "*"))):
        f.unlink()
    wf.run(*trained, *targets(config, {"features"}), "--forcerun", "train", cores=2)
    (a, b) = intervals(wf.results, "train")
    assert overlap(a, b) <= 0, f"jobs_per_gpu=1: one training at a time: {a}, {b}"
    (head,) = intervals(wf.results, "features")
    gpu_jobs = [a, b, *intervals(wf.results, "embed"), *intervals(wf.results, "evaluate")]
    assert max(overlap(head, t) for t in gpu_jobs) > 0, f"the head waited for the GPU: {head} vs {gpu_jobs}"
    for target in trained:
        env = json.loads((wf.workdir / target).read_text())["job_env"]
        assert env["CONVSCOPE_JOBS_PER_GPU"] == "1" and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env


def test_memory_caps_per_backend_and_user_settings_win(monkeypatch):
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    monkeypatch.delenv("CONVSCOPE_TF_GPU_MEMORY_FRACTION", raising=False)
    assert backend_lib.gpu_memory_env("jax", 4)["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.225"
    tf = backend_lib.gpu_memory_env("tensorflow", 3)
    assert tf["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" and tf["CONVSCOPE_TF_GPU_MEMORY_FRACTION"] == "0.300"
    assert "CONVSCOPE_TF_GPU_MEMORY_FRACTION" not in backend_lib.gpu_memory_env("tensorflow", 1)
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.1")
    assert backend_lib.gpu_memory_env("jax", 2)["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.1"


def test_gpu_claims_follow_jobs_per_gpu_and_heads_claim_none(workflow):
    """The DAG's resources: training/embedding/evaluation claim 100/n of a GPU, heads nothing (dry run, --verbose)."""
    config = make_config(jobs_per_gpu=4)
    wf = workflow(config)
    proc = wf.run("-n", "--verbose", *targets(config, {"finetune", "features"}))
    by_rule = {}
    for m in re.finditer(
        r"rule (\w+):\n(?:[ \t]+(?!resources)\w+: .*\n)*[ \t]+resources: (.*)", proc.stdout + proc.stderr
    ):
        by_rule.setdefault(m.group(1), m.group(2))
    for rule in ("train", "embed", "evaluate"):
        assert "gpu_share=25" in by_rule[rule], by_rule
    for rule in ("features_head", "evaluate_head"):
        assert "gpu_share" not in by_rule[rule] or "gpu_share=0" in by_rule[rule], by_rule


OOM_CHILD = r"""
import json, sys
import keras
from convscope.training.run import train_run
from convscope import backend as backend_lib

class OutOfMemoryAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        import jax
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.00GiB.")

spec = json.loads(sys.argv[3])
try:
    train_run(prepared_dir=sys.argv[1], out_dir=sys.argv[2], callbacks=(OutOfMemoryAfterFirstEpoch(),), **spec)
except backend_lib.GpuMemoryError as e:
    print("OOM " + str(e))
result = train_run(prepared_dir=sys.argv[1], out_dir=sys.argv[2], **spec)
print("RESULT " + json.dumps({"resumed": result["resumed_from_epoch"], "epochs": result["epochs_trained"]}))
"""


def test_out_of_memory_names_the_key_and_the_retry_resumes(tmp_path):
    prepared = write_prepared(Results(tmp_path).prepared_dir("32"), size=32, counts=(32, 8, 8))
    spec = {
        "backbone": "alexnet",
        "options": {"weights": "none"},
        "input_size": 32,
        "strategy": "finetune",
        "hp": hp(batch_size=16, epochs=2),
        "classes": CLASSES,
        "backend": "jax",
        "bootstrap": 100,
        "tensorboard": False,
        "threads": 1,
    }
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", OOM_CHILD, str(prepared), str(tmp_path / "run"), json.dumps(spec)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    oom = next(ln for ln in proc.stdout.splitlines() if ln.startswith("OOM "))
    assert "ran out of GPU memory" in oom and "train.jobs_per_gpu (now 1)" in oom and "batch_size" in oom
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert result == {"resumed": 1, "epochs": 2}
