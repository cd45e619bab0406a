"""A training process killed with SIGKILL after an epoch resumes where it stopped.

The training runs in a subprocess (the real entry point, convscope.training.run.
train_run). A callback placed after the run's own callbacks sends SIGKILL to
its own process at the end of a chosen epoch, once EpochBackup's writer has
put that epoch's backup on disk (or, in one test, while it may still be
writing): the same state an external `kill -9` leaves, at a deterministic point. The re-run (in this process, which saves a Keras start-up)
must resume, not restart, and finish.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from convscope import layout
from tests.conftest import REPO
from tests.test_training import backend_in_use, hp, write_prepared

SCRIPT = """
import json, logging, os, signal, sys
logging.basicConfig(level=logging.INFO)
import time
from pathlib import Path
import keras
from convscope.training.callbacks import backup_epoch
from convscope.training.run import train_run

kill_after, wait_for_backup = int(sys.argv[4]), sys.argv[5] == "wait"

class KillAfterEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == kill_after:
            folders = sorted((Path(sys.argv[2]) / "backup").glob("phase*"))
            deadline = time.monotonic() + 60
            while wait_for_backup and time.monotonic() < deadline:
                if any(backup_epoch(f) == epoch + 1 for f in folders):
                    break
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)

spec = json.loads(sys.argv[3])
train_run(prepared_dir=sys.argv[1], out_dir=sys.argv[2], callbacks=(KillAfterEpoch(),), **spec)
"""


def common(prepared, out) -> dict:
    return {
        "prepared_dir": str(prepared),
        "out_dir": str(out),
        "backbone": "alexnet",
        "options": {"weights": "none"},
        "input_size": 64,
        "classes": ["red", "green", "blue"],
        "backend": backend_in_use(),
        "bootstrap": 200,
        "threads": 2,
        "tensorboard": False,
    }


def kill_during(prepared, out, spec, kill_after, wait_for_backup=True):
    """Train in a subprocess that SIGKILLs itself after epoch `kill_after` (0-based).

    wait_for_backup: only once that epoch's backup is on disk; else at once,
    with the backup writer possibly half-way through the file.
    """
    args = {**common(prepared, out), **spec}
    args.pop("prepared_dir"), args.pop("out_dir")
    env = {**os.environ, "KERAS_BACKEND": backend_in_use()}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(prepared),
            str(out),
            json.dumps(args),
            str(kill_after),
            "wait" if wait_for_backup else "now",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=env,
    )


def resume(prepared, out, spec, caplog, **extra):
    from convscope.training.run import train_run

    with caplog.at_level(logging.INFO):
        return train_run(**common(prepared, out), **spec, **extra)


def backup_epoch(folder):
    from convscope.training.callbacks import backup_epoch  # imports Keras: not at collection

    return backup_epoch(folder)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


HP = hp(epochs=4)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return write_prepared(tmp_path_factory.mktemp("prepared") / "64")


@pytest.mark.slow
def test_killed_finetune_resumes_from_the_last_epoch(prepared, tmp_path, caplog):
    out = tmp_path / "finetune"
    spec = {"strategy": "finetune", "hp": HP}
    killed = kill_during(prepared, out, spec, kill_after=1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    for name in (layout.MODEL, layout.HISTORY, layout.FIT):
        assert not (out / name).exists(), f"a killed run left {name} behind"
    assert backup_epoch(out / "backup" / "phase0") == 2
    before = rows(out / "backup" / "history.csv")
    assert [r["epoch"] for r in before] == ["0", "1"]

    resume(prepared, out, spec, caplog)
    assert "resuming at epoch 2" in caplog.text
    metrics = json.loads((out / layout.FIT).read_text())
    assert metrics["resumed_from_epoch"] == 2 and metrics["epochs_trained"] == 4
    after = rows(out / layout.HISTORY)
    assert [r["epoch"] for r in after] == ["0", "1", "2", "3"]
    assert after[:2] == before, "the epochs before the kill are kept as they were, not re-run"
    assert not (out / "backup").exists()


@pytest.mark.slow
def test_killed_while_the_backup_is_written_resumes_from_a_whole_epoch(prepared, tmp_path, caplog):
    out = tmp_path / "mid-write"
    spec = {"strategy": "finetune", "hp": HP}
    killed = kill_during(prepared, out, spec, kill_after=1, wait_for_backup=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    # epoch 2's write may or may not have finished; epoch 1's backup was complete before it began
    resumed_at = backup_epoch(out / "backup" / "phase0")
    assert resumed_at in (1, 2)

    resume(prepared, out, spec, caplog)
    metrics = json.loads((out / layout.FIT).read_text())
    assert metrics["resumed_from_epoch"] == resumed_at and metrics["epochs_trained"] == 4
    assert [r["epoch"] for r in rows(out / layout.HISTORY)] == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_killed_progressive_resumes_in_the_right_phase(prepared, tmp_path, caplog):
    out = tmp_path / "progressive"
    spec = {
        "strategy": "progressive",
        "hp": {**HP, "epochs": 3, "tune_depth": 2},
        "progressive": {"every": 1, "lr_decay": 0.5},
    }
    # Epoch 1 is the whole of phase 1: killed after its backup, before the phase was marked done.
    killed = kill_during(prepared, out, spec, kill_after=1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (out / "backup" / "phase0.weights.h5").exists() and not (out / "backup" / "phase1.weights.h5").exists()

    resume(prepared, out, spec, caplog)
    assert "phases up to 0 done" in caplog.text and "phase 1: resuming at epoch 2" in caplog.text
    metrics = json.loads((out / layout.FIT).read_text())
    assert metrics["resumed_from_epoch"] == 2 and metrics["epochs_trained"] == 3
    history = rows(out / layout.HISTORY)
    assert [(r["epoch"], r["depth"]) for r in history] == [("0", "0"), ("1", "1"), ("2", "2")]
    assert [float(r["learning_rate"]) for r in history] == pytest.approx([1e-3, 5e-4, 2.5e-4])


def test_a_backup_made_with_other_settings_is_not_resumed(prepared, tmp_path, caplog):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # like Ctrl-C after the first epoch's backup

    out = tmp_path / "changed"
    spec = {"strategy": "finetune", "hp": {**HP, "epochs": 3}}
    with pytest.raises(KeyboardInterrupt):
        resume(prepared, out, spec, caplog, callbacks=(Interrupt(),))
    # the epoch's backup is written off the training thread, yet complete once the error surfaces
    assert backup_epoch(out / "backup" / "phase0") == 1
    changed = {"strategy": "finetune", "hp": {**HP, "epochs": 3, "learning_rate": 3e-4}}
    resume(prepared, out, changed, caplog)
    assert "made with other settings" in caplog.text
    metrics = json.loads((out / layout.FIT).read_text())
    assert metrics["resumed_from_epoch"] is None and metrics["epochs_trained"] == 3
    assert [float(r["learning_rate"]) for r in rows(out / layout.HISTORY)] == pytest.approx([3e-4] * 3)


def test_epoch_backup_restores_weights_optimizer_and_epoch_by_position(tmp_path):
    import keras

    from convscope import keras_compat
    from convscope.training import callbacks as cb

    def model(units=4):
        m = keras.Sequential(
            [
                keras.Input((3,)),
                keras.layers.Dense(units),
                keras.layers.BatchNormalization(),
                keras.layers.Dropout(0.5, seed=1),
                keras.layers.Dense(2, activation="softmax"),
            ]
        )
        m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
        return m

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 3)).astype("float32"), np.eye(2, dtype="float32")[rng.integers(0, 2, 32)]
    trained = model()
    backup = cb.EpochBackup(tmp_path / "bk")
    trained.fit(x, y, epochs=3, verbose=0, callbacks=[backup])
    assert not (tmp_path / "bk").exists(), "on_train_end removes the backup"
    backup.on_epoch_end(2)  # the backup a kill right after the third epoch would leave
    backup.wait()
    assert cb.backup_epoch(tmp_path / "bk") == 3 and not list((tmp_path / "bk").glob(".tmp-*"))

    # A fresh model (other auto-generated layer names) gets every variable back, optimizer state included.
    fresh = model()
    assert [v.path for v in fresh.variables] != [v.path for v in trained.variables]
    restore = cb.EpochBackup(tmp_path / "bk")
    restore.set_model(fresh)
    restore.on_train_begin()
    assert keras_compat.initial_epoch(fresh) == 3
    for saved, restored in zip(
        [*trained.variables, *trained.optimizer.variables], [*fresh.variables, *fresh.optimizer.variables], strict=True
    ):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(saved), keras.ops.convert_to_numpy(restored))
    assert int(keras.ops.convert_to_numpy(fresh.optimizer.iterations)) == 3

    other = model(units=5)
    mismatch = cb.EpochBackup(tmp_path / "bk")
    mismatch.set_model(other)
    with pytest.raises(RuntimeError, match="does not match this model"):
        mismatch.on_train_begin()
