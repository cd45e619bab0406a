"""A run whose loss becomes NaN fails its job in one line naming the run and the
setting to lower, and writes no model, fit record or metrics (a real snakemake run)."""

from __future__ import annotations

import copy

from conftest import tiny_config
from convscope import config as cfg
from convscope import grid

# A learning rate the schema accepts (finite, > 0) but under which Adam's first steps
# overflow the weights: the first epoch's loss is NaN.
TRAIN = {
    "strategies": ["scratch"],
    "grid": {"learning_rate": [10], "optimizer": ["sgd"], "batch_size": [8], "epochs": [3], "augment": ["none"]},
    "threads": 1,
    "tensorboard": False,
}


def test_nan_loss_fails_the_run_in_one_line(workflow):
    config = tiny_config(backbones={"alexnet": {"input_size": 32, "weights": "none"}}, train=TRAIN)
    wf = workflow(config)
    (run,) = grid.runs(cfg.load_and_validate(copy.deepcopy(config)))
    metrics = str(wf.layout.metrics(run.backbone, run.id))
    proc = wf.run(metrics, check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert f"run alexnet/{run.id} diverged" in lines[0] and "loss nan" in lines[0], lines[0]
    assert "config key train.grid.learning_rate, now 10" in lines[0], lines[0]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    folder = wf.tree.run_dir(run.backbone, run.id)
    assert not any((folder / name).exists() for name in ("model.keras", "fit.json", "metrics.json"))
