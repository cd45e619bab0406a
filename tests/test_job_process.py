"""Snakemake's benchmark of a training job describes the job's real process.

Every Keras job is its own process (no server, no fork between jobs), so the
benchmark file Snakemake writes for a train job measures the training itself:
its peak memory holds at least Keras with its backend plus the model's weights,
and its CPU time at least what importing Keras costs a fresh process. Both bounds
come from this run and this machine: the weights from the saved model, Keras'
memory and CPU from a fresh process that imports it as a job does
(convscope.backend.select). A stand-in process (a client waiting on a server, as
with the retired warm start) records about 27 MB and 0.1 s, and fails here.

Why not "CPU time >= the epochs' time": Snakemake samples a job's CPU time every
0.5 s for its first 15 s, then every 30 s, with no sample at exit, so a longer
job's cpu_time lags its end; and on a shared machine an epoch's wall time exceeds
its CPU time. The test asserts it only for a job that ended inside the dense
sampling and got a core to itself during its epochs.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from convscope import config as cfg
from convscope import grid
from tests.conftest import REPO, tiny_config

# VmHWM, not ru_maxrss: the latter keeps the high-water mark of the forked test process across exec.
KERAS_IMPORT = r"""
import sys, time
from convscope import backend
backend.select(sys.argv[1], threads=1)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmHWM"].split()[0]) / 1024, time.process_time())  # peak MB, CPU s
"""


def keras_import_cost(backend: str) -> tuple[float, float]:
    """(peak MB, CPU s) of a fresh process importing Keras as a job does."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", KERAS_IMPORT, backend], env=env, capture_output=True, text=True, check=True, timeout=300
    )
    mb, cpu = out.stdout.split()[-2:]
    return float(mb), float(cpu)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_train_benchmark_records_the_training_process(workflow):
    config = tiny_config(
        classes=("circle", "square", "triangle"),
        images=30,
        image_size=48,
        backbones={"alexnet": {"input_size": 32, "weights": "none"}},
        train={
            "backend": "jax",  # no TensorFlow import: seconds per job on CPU
            "strategies": ["scratch"],
            "grid": {"learning_rate": [0.001], "epochs": [3], "batch_size": [8], "augment": ["none"]},
            "threads": 1,
            "bootstrap": 100,
            "tensorboard": False,
            "gpu": False,
        },
    )
    wf = workflow(config)
    (run,) = grid.runs(cfg.load_and_validate(copy.deepcopy(config)))
    wf.run(str(wf.layout.fit(run.backbone, run.id)))

    with wf.tree.benchmark("train", run.backbone, run.id).open() as f:
        bench = next(csv.DictReader(f, delimiter="\t"))
    fit = json.loads(wf.tree.fit(run.backbone, run.id).read_text())

    from convscope.models.build import load_model

    model = load_model(wf.tree.model(run.backbone, run.id), compile=False)
    weights_mb = sum(np.asarray(w).nbytes for w in model.weights) / 2**20
    import_mb, import_cpu = keras_import_cost("jax")
    assert float(bench["max_rss"]) >= import_mb + weights_mb, (
        f"train benchmark max_rss {bench['max_rss']} MB < Keras+JAX import and weights "
        f"{import_mb + weights_mb:.1f} MB: the benchmark did not measure the training process"
    )
    assert float(bench["cpu_time"]) >= import_cpu, (
        f"train benchmark cpu_time {bench['cpu_time']} s < the {import_cpu:.2f} s of CPU a fresh process "
        "spends importing Keras: the benchmark did not measure the training process"
    )
    # Jobs keep JAX's persistent compilation cache in the results tree (nothing written outside it).
    assert any(wf.tree.compile_cache.rglob("*")), f"{wf.tree.compile_cache} stayed empty"

    # The process's own CPU time while fitting (fit.json train_cpu_s) is in the benchmark's whenever
    # Snakemake sampled the job to its end; with a core to itself that is at least the epochs' wall time.
    assert fit["train_cpu_s"] > 0
    if float(bench["s"]) < 14:
        assert float(bench["cpu_time"]) >= fit["train_cpu_s"]
        if fit["train_cpu_s"] >= 0.9 * fit["train_time_s"]:
            assert float(bench["cpu_time"]) >= fit["train_time_s"]
