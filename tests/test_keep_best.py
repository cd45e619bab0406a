"""A run keeps the weights of its best epoch (train.keep), also across a kill and a resume.

The validation loss is made to peak early on purpose: a callback placed after
the run's own ones snapshots the weights of every epoch to disk and, at the end
of epoch 1, makes the head confidently wrong and stops learning (learning rate
0 from then on), so every later epoch validates far worse than epochs 0-1. The kept model must then predict exactly
what the snapshot of the epoch history.csv names as best predicts.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from convscope import layout
from tests.conftest import REPO
from tests.test_training import backend_in_use, hp, write_prepared

CALLBACKS = """
import os, signal
from pathlib import Path
import keras
import numpy as np

class Snapshot(keras.callbacks.Callback):
    '''Save each epoch's weights (as KeepBest saw them); at the end of epoch `spoil_after` make the head
    confidently wrong (its class columns rolled, times 50) and stop learning from then on (learning rate 0),
    so every later epoch validates far worse.'''

    def __init__(self, folder, spoil_after=1, kill_after=None, kill_before=None):
        super().__init__()
        self.folder, self.spoil_after = Path(folder), spoil_after
        self.kill_after, self.kill_before = kill_after, kill_before

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.kill_before:
            os.kill(os.getpid(), signal.SIGKILL)
        if epoch > self.spoil_after:
            self.model.optimizer.learning_rate.assign(0.0)

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.model.save_weights(str(self.folder / f"epoch{epoch}.weights.h5"))
        if epoch == self.spoil_after:
            head = self.model.get_layer("head")
            kernel = keras.ops.convert_to_numpy(head.kernel)
            head.kernel.assign(np.roll(kernel, 1, axis=1) * 50)
        if epoch == self.kill_after:
            folders = sorted((self.folder.parent / "run" / "backup").glob("phase*"))
            from convscope.training.callbacks import backup_epoch
            import time
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(backup_epoch(f) == epoch + 1 for f in folders):
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)
"""

SCRIPT = (
    CALLBACKS
    + """
import json, sys
from convscope.training.run import train_run
spec, snap = json.loads(sys.argv[1]), json.loads(sys.argv[2])
train_run(callbacks=(Snapshot(**snap),), **spec)
"""
)

HP = hp(epochs=4, dropout=0.0, augment="none")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return write_prepared(tmp_path_factory.mktemp("prepared") / "64")


def spec(prepared, out, **changes) -> dict:
    base = {
        "prepared_dir": str(prepared),
        "out_dir": str(out),
        "backbone": "alexnet",
        "options": {"weights": "none"},
        "input_size": 64,
        "strategy": "finetune",
        "hp": HP,
        "classes": ["red", "green", "blue"],
        "backend": backend_in_use(),
        "bootstrap": 200,
        "threads": 2,
        "tensorboard": False,
    }
    base.update(changes)
    return base


def snapshot_callback(**snap):
    """The same Snapshot callback in this process (for the resumed half of a killed run)."""
    namespace: dict = {}
    exec(CALLBACKS, namespace)
    return namespace["Snapshot"](**snap)


def run_in_subprocess(run_spec: dict, snap: dict):
    env = {**os.environ, "KERAS_BACKEND": backend_in_use()}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(run_spec), json.dumps(snap)],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=env,
    )


def history(out) -> list[dict]:
    with open(out / layout.HISTORY, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def predictions_agree(out, prepared, snapshot) -> None:
    """model.keras predicts the test split exactly as a model holding `snapshot`'s weights does."""
    from convscope.models import build

    test = np.load(layout.prepared_in(prepared, "test")).astype("float32")
    kept = build.load_model(out / layout.MODEL, compile=False)
    reference = build.build_classifier("alexnet", 3, input_size=64, weights="none", dropout=0.0, augment="none")
    reference.load_weights(str(snapshot))
    np.testing.assert_allclose(
        kept.predict(test, verbose=0),
        reference.predict(test, verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


def check_kept(out, prepared, snapshots, monitor="val_loss") -> int:
    rows = history(out)
    metrics = json.loads((out / layout.FIT).read_text())
    assert [int(r["epoch"]) for r in rows] == list(range(HP["epochs"])), "the whole history is written"
    losses = [r[monitor] for r in rows]
    best = int(np.argmin(losses)) if monitor == "val_loss" else int(np.argmax(losses))
    assert best < HP["epochs"] - 1 and best <= 1, f"the spoiled head should make an early epoch best: {losses}"
    assert metrics["kept"]["epoch"] == best and metrics["kept"]["monitor"] == monitor
    assert metrics["kept"]["value"] == pytest.approx(losses[best], rel=1e-4)
    predictions_agree(out, prepared, snapshots / f"epoch{best}.weights.h5")
    return best


@pytest.mark.slow
def test_a_run_keeps_its_best_epoch_and_an_interrupted_one_the_same(prepared, tmp_path):
    from convscope.training.run import train_run

    # Uninterrupted: in a subprocess too, so both runs start from the same fresh process state.
    done = run_in_subprocess(spec(prepared, tmp_path / "run"), {"folder": str(tmp_path / "snap")})
    assert done.returncode == 0, done.stderr[-3000:]
    best = check_kept(tmp_path / "run", prepared, tmp_path / "snap")

    # Killed after epoch 2 (the best epoch's weights are then only in the backup), resumed here.
    killed_dir = tmp_path / "k"
    killed = run_in_subprocess(
        spec(prepared, killed_dir / "run"),
        {"folder": str(killed_dir / "snap"), "kill_after": 2},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (killed_dir / "run" / layout.FIT).exists()
    train_run(**spec(prepared, killed_dir / "run"), callbacks=(snapshot_callback(folder=str(killed_dir / "snap")),))
    metrics = json.loads((killed_dir / "run" / layout.FIT).read_text())
    assert metrics["resumed_from_epoch"] == 3
    assert check_kept(killed_dir / "run", prepared, killed_dir / "snap") == best


@pytest.mark.slow
def test_progressive_keeps_the_best_epoch_of_a_finished_phase_after_a_kill(prepared, tmp_path):
    """Killed as phase 2 begins: the best (epoch 0 or 1) lives only in best.npz of the finished phases."""
    from convscope.training.run import train_run

    run_spec = spec(
        prepared,
        tmp_path / "run",
        strategy="progressive",
        hp={**HP, "tune_depth": 3},
        progressive={"every": 1, "lr_decay": 0.5},
    )
    killed = run_in_subprocess(run_spec, {"folder": str(tmp_path / "snap"), "kill_before": 2})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    backup = tmp_path / "run" / "backup"
    assert (backup / "phase1.weights.h5").exists() and (backup / "best.npz").exists()
    assert not (backup / "phase2").exists()
    train_run(**run_spec, callbacks=(snapshot_callback(folder=str(tmp_path / "snap")),))
    check_kept(tmp_path / "run", prepared, tmp_path / "snap")


def test_keep_last_and_val_accuracy(prepared, tmp_path):
    """keep: last keeps the final weights; val_accuracy records its epoch with the highest accuracy."""
    from convscope.training.run import train_run

    short = {**HP, "epochs": 2}
    last = train_run(**spec(prepared, tmp_path / "last", hp=short, keep="last"))
    assert last["kept"] == {"monitor": "last", "epoch": 1, "value": None}
    acc = train_run(**spec(prepared, tmp_path / "acc", hp=short, keep="val_accuracy"))
    rows = history(tmp_path / "acc")
    accuracies = [r["val_accuracy"] for r in rows]
    assert acc["kept"]["monitor"] == "val_accuracy"
    assert acc["kept"]["value"] == pytest.approx(max(accuracies), rel=1e-4)
    assert accuracies[acc["kept"]["epoch"]] == pytest.approx(max(accuracies), rel=1e-4)
