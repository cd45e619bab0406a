"""Keras callbacks of a training run (their order matters; see run.train_run).

None of them may force a host-device sync per step: Keras dispatches
on_train_batch_end on a worker thread only when every callback either leaves
the batch hooks alone or says async_safe; otherwise it converts each step's
logs to Python numbers, and under JAX the host waits for every step before
queuing the next (the GPU idles between steps). The JAX test in
tests/test_training.py checks that phase_callbacks keeps it asynchronous.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np

from convscope import atomic, faults, keras_compat, layout

log = logging.getLogger(__name__)


class EpochSeed(keras.callbacks.Callback):
    """Tell the training dataset which epoch starts, before its first batch is read."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)


class Diverged(faults.Stated):
    """A run's loss became NaN or infinite: nothing it learned can be kept."""


class StopOnNaN(keras.callbacks.Callback):
    """Fail the run at the first epoch whose loss or val_loss is not finite.

    keras.callbacks.TerminateOnNaN only stops fit, and the run would then be saved and
    scored as if it had trained. Checked per epoch, not per batch: a batch hook would
    force a host-device sync every step (see the module docstring).
    """

    def __init__(self, what: str, setting: str):
        super().__init__()
        self.what, self.setting = what, setting

    def on_epoch_end(self, epoch, logs=None):
        bad = {k: v for k, v in (logs or {}).items() if k in ("loss", "val_loss") and not math.isfinite(float(v))}
        if bad:
            found = ", ".join(f"{k} {float(v)}" for k, v in bad.items())
            raise Diverged(
                f"{self.what} diverged ({found} after epoch {epoch + 1}); lower {self.setting} and run again"
            )


def trainable_params(model) -> int:
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


class RunLog(keras.callbacks.Callback):
    """Adds learning_rate, trainable_params, depth, train_s and epoch_s to each epoch's logs.

    depth is the phase's tune_depth, -1 for "all" (history.csv holds numbers).
    It must come before CSVLogger (which writes the logs it sees). train_s is
    the training part of the epoch (up to validation), the basis of images/s;
    the first step's time (tracing/compilation included) is kept separately.

    async_safe: its batch hook only records when the first step's logs are
    ready (on Keras' callback thread, which waits for that step).
    """

    async_safe = True

    def __init__(self, depth, images_per_epoch: int):
        super().__init__()
        self.depth = depth
        self.images_per_epoch = int(images_per_epoch)
        self.first_step_s = None
        self._fit_start = None
        self._epoch_start = None
        self._train_end = None

    def on_train_begin(self, logs=None):
        self._fit_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._train_end = None

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step_s is None:
            self.first_step_s = time.perf_counter() - self._fit_start

    def on_test_begin(self, logs=None):
        if self._epoch_start is not None and self._train_end is None:
            # Steps are dispatched asynchronously: wait for the last one to finish
            # (its optimizer step count), or its time would count as validation.
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        train_s = (self._train_end or now) - self._epoch_start
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            logs["trainable_params"] = trainable_params(self.model)
            logs["depth"] = -1 if self.depth == "all" else int(self.depth)
            logs["train_s"] = round(train_s, 4)
            logs["epoch_s"] = round(now - self._epoch_start, 4)
        log.info(
            "epoch %d: %s (%.1f images/s)",
            epoch + 1,
            ", ".join(f"{k}={v:.4g}" for k, v in sorted((logs or {}).items()) if isinstance(v, (int, float))),
            self.images_per_epoch / max(train_s, 1e-9),
        )


class PhaseDone(keras.callbacks.Callback):
    """At the end of a phase's fit, save its weights atomically as the phase's done marker.

    Listed before EpochBackup, whose on_train_end deletes its backup: a
    kill between the two leaves the marker, never neither.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def on_train_end(self, logs=None):
        with atomic.path(self.path) as tmp:
            self.model.save_weights(str(tmp))


class EpochTensorBoard(keras.callbacks.Callback):
    """Each epoch's logs as TensorBoard scalars; a failure logs a warning, never fails the run.

    Same layout and tags as keras.callbacks.TensorBoard(update_freq="epoch"):
    runs train/ and validation/ with scalars epoch_<name> (val_ prefixes go to
    validation/). Written with tensorboardX because Keras' callback writes
    through tf.summary under every backend, which imported TensorFlow into each
    JAX job. Flushed at every epoch end, so a killed run keeps its curves. No
    batch hooks (see module doc). `error` says why logging stopped, if it did.
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.error = None
        self._writers = {}

    def _fail(self, exc):
        self.error = f"TensorBoard logging disabled: {type(exc).__name__}: {exc}"
        log.warning("%s (training continues; metrics.json records it)", self.error)
        self.close()

    def on_train_begin(self, logs=None):
        # Opened at the first phase's start, so that an unwritable folder is reported before training.
        if self.error is None and not self._writers:
            try:
                from tensorboardX import SummaryWriter

                # pid in the file name: a resumed run's events never overwrite those of the killed one
                self._writers = {
                    run: SummaryWriter(str(self.log_dir / run), filename_suffix=f".{os.getpid()}")
                    for run in ("train", "validation")
                }
            except Exception as e:  # any failure means no TensorBoard logs
                self._fail(e)

    def on_epoch_end(self, epoch, logs=None):
        if not self._writers:
            return
        try:
            for key, value in (logs or {}).items():
                run, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
                self._writers[run].add_scalar(f"epoch_{name}", float(value), epoch)
            for writer in self._writers.values():
                writer.flush()
        except Exception as e:
            self._fail(e)

    def close(self):
        """Flush and close the event files (train_run calls it once all phases are done)."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            try:
                writer.close()
            except Exception:  # closing after a failure: nothing more to report
                pass


BACKUP_FILE = layout.EPOCH_STATE
KEEP = {"val_loss": "min", "val_accuracy": "max", "last": None}  # train.keep: monitored metric -> better when


class KeepBest(keras.callbacks.Callback):
    """The weights of the run's best epoch by a validation metric, kept across phases (train.keep).

    monitor: "val_loss" (lowest wins), "val_accuracy" (highest; a tie goes to the
    lower val_loss) or "last" (keeps nothing: the model ends as trained). The best
    weights are copied to host memory when an epoch improves; apply() puts them
    back into the model at the end of the run. Surviving a kill: EpochBackup
    stores state() in each epoch's backup file (one file, so the best-so-far
    always belongs to the epochs that backup holds), and on_train_end saves it
    to `path` before PhaseDone marks the phase done (a later phase resumes from
    load()). An epoch is numbered as in history.csv (0-based).
    """

    PREFIX = "best_"

    def __init__(self, monitor: str = "val_loss", path=None):
        super().__init__()
        if monitor not in KEEP:
            raise ValueError(f"config key train.keep: {monitor!r} unknown; allowed values: {list(KEEP)}")
        self.monitor = monitor
        self.path = Path(path) if path is not None else None
        self.epoch: int | None = None
        self.score: float | None = None
        self.tie = math.inf  # val_loss of the best epoch (val_accuracy's tie-break)
        self.weights: list | None = None

    def _better(self, score: float, tie: float) -> bool:
        if self.score is None:
            return True
        if KEEP[self.monitor] == "min":
            return score < self.score
        return score > self.score or (score == self.score and tie < self.tie)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor == "last":
            return
        logs = logs or {}
        if self.monitor not in logs:
            raise KeyError(
                f"train.keep: {self.monitor} is not in the epoch's logs ({sorted(logs)}); is there a val split?"
            )
        score, tie = float(logs[self.monitor]), float(logs.get("val_loss", math.inf))
        if math.isfinite(score) and self._better(score, tie):
            self.epoch, self.score, self.tie = int(epoch), score, tie
            self.weights = [_host_copy(w) for w in self.model.weights]

    def state(self, epoch: int) -> dict:
        """This object's part of the backup of epoch `epoch` (its weights left out when that epoch is the best:
        they are the model's own, saved beside them)."""
        if self.epoch is None:
            return {}
        out = {
            "best_epoch": np.int64(self.epoch),
            "best_score": np.float64(self.score),
            "best_tie": np.float64(self.tie),
        }
        if self.epoch == epoch:
            out["best_current"] = np.int64(1)
        else:
            out.update({f"best_w{i}": w for i, w in enumerate(self.weights)})
            out["best_count"] = np.int64(len(self.weights))
        return out

    def restore(self, state: dict) -> None:
        """Take back state() from a backup (called by EpochBackup after the model's variables are restored)."""
        if "best_epoch" not in state:
            return
        self.epoch, self.score, self.tie = (
            int(state["best_epoch"]),
            float(state["best_score"]),
            float(state["best_tie"]),
        )
        if "best_current" in state:
            self.weights = [_host_copy(w) for w in self.model.weights]
        else:
            self.weights = [np.asarray(state[f"best_w{i}"]) for i in range(int(state["best_count"]))]

    def on_train_end(self, logs=None):
        if self.path is None or self.epoch is None:
            return
        state = {
            "best_epoch": np.int64(self.epoch),
            "best_score": np.float64(self.score),
            "best_tie": np.float64(self.tie),
            "best_count": np.int64(len(self.weights)),
            **{f"best_w{i}": w for i, w in enumerate(self.weights)},
        }
        with atomic.path(self.path) as tmp:
            np.savez(tmp, **state)

    def load(self) -> bool:
        """The best-so-far saved at the end of the last finished phase (True when there was one)."""
        if self.path is None or not self.path.exists():
            return False
        with np.load(self.path) as state:
            self.restore({k: state[k] for k in state.files})
        log.info("best epoch so far: %d (%s %.4g), from %s", self.epoch, self.monitor, self.score, self.path)
        return True

    def apply(self, model, last_epoch: int) -> dict:
        """Put the best epoch's weights into `model`; returns what metrics.json records as "kept"."""
        if self.monitor == "last" or self.weights is None:
            return {"monitor": self.monitor, "epoch": int(last_epoch), "value": None}
        weights = model.weights
        if [tuple(w.shape) for w in weights] != [tuple(w.shape) for w in self.weights]:
            raise RuntimeError(
                "the kept best-epoch weights do not match the model's (was the backup made for another model?)"
            )
        for variable, value in zip(weights, self.weights):
            variable.assign(value)
        # 1-based, as the per-epoch log lines count (metrics.json keeps history.csv's 0-based index).
        log.info("kept epoch %d of %d (%s %.4g)", self.epoch + 1, last_epoch + 1, self.monitor, self.score)
        return {"monitor": self.monitor, "epoch": self.epoch, "value": self.score}


def backup_epoch(folder) -> int | None:
    """The epoch an EpochBackup folder resumes at (None if it holds no complete backup)."""
    path = Path(folder) / BACKUP_FILE
    try:
        with np.load(path) as state:
            return int(state["epoch"])
    except (OSError, KeyError, ValueError):
        return None


def _host_copy(variable) -> np.ndarray:
    """The variable's value in host memory the writer thread can own.

    On CPU the backends may hand out a view of the variable's buffer, which the
    next step reuses (JAX donates it): copy those; arrays fetched from a GPU
    are fresh already.
    """
    value = keras.ops.convert_to_numpy(variable)
    return value if value.flags.owndata else value.copy()


class EpochBackup(keras.callbacks.Callback):
    """Per-epoch training state (model and optimizer variables, epoch), saved off the training thread.

    At each epoch end the variables are copied to host memory and a writer
    thread saves them to backup_dir/state.npz through a temporary file and a
    rename, so the file on disk always holds one whole epoch. Training goes on
    meanwhile; the next epoch end (and wait()) waits for that write, so at most
    one is in flight, and a kill during it resumes from the epoch before.
    Keras' BackupAndRestore writes on the training thread (ResNet50 with Adam
    on 2 CPU cores under JAX: 1.2-1.4 s per epoch, ours 0.3-0.4 s; see
    bench/epoch_backup.py), longer than a GPU epoch of a small dataset, and
    writes weights and epoch as two files that a kill can leave out of step. on_train_begin restores a backup;
    on_train_end removes it, after PhaseDone has saved the phase's weights.
    `extra` (a KeepBest) adds its best-so-far to each epoch's file and gets it
    back on restore, so the best epoch always matches the epoch resumed at.
    No batch hooks (see module doc).
    """

    def __init__(self, backup_dir, extra: KeepBest | None = None):
        super().__init__()
        self.folder = Path(backup_dir)
        self.extra = extra
        self._pool = None
        self._pending = None

    def _variables(self):
        return [*self.model.variables, *self.model.optimizer.variables]

    def on_train_begin(self, logs=None):
        path = self.folder / BACKUP_FILE
        if not path.exists():
            return
        optimizer = self.model.optimizer
        if not optimizer.built:  # its variables must exist to receive the backup
            optimizer.build(self.model.trainable_variables)
        variables = self._variables()
        with np.load(path) as state:
            values = [state[f"v{i}"] for i in range(int(state["count"]))]
            epoch = int(state["epoch"])
            extra = {k: state[k] for k in state.files if k.startswith(KeepBest.PREFIX)}
        # By position, as Keras' load_weights does: auto-generated layer names differ between processes.
        shapes = [tuple(v.shape) for v in variables]
        if [tuple(x.shape) for x in values] != shapes:
            raise RuntimeError(
                f"{path}: the backup does not match this model's variables ({len(values)} saved, "
                f"{len(variables)} here, or other shapes); delete {self.folder} to train this phase from its start"
            )
        for variable, value in zip(variables, values):
            variable.assign(value)
        keras_compat.set_initial_epoch(self.model, epoch)
        if self.extra is not None:
            self.extra.restore(extra)

    def on_epoch_end(self, epoch, logs=None):
        self.wait()
        state = {f"v{i}": _host_copy(v) for i, v in enumerate(self._variables())}
        state.update(count=np.int64(len(state)), epoch=np.int64(epoch + 1))
        if self.extra is not None:
            state.update(self.extra.state(epoch))
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup")
        self._pending = self._pool.submit(self._write, state)

    def _write(self, state):
        with atomic.path(self.folder / BACKUP_FILE) as tmp, open(tmp, "wb") as f:
            np.savez(f, **state)
            f.flush()
            os.fsync(f.fileno())

    def wait(self):
        """Block until the last backup is on disk; raises the writer's error, if any."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def on_train_end(self, logs=None):
        self.wait()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        shutil.rmtree(self.folder, ignore_errors=True)


def phase_callbacks(train_ds, runlog: RunLog, history_csv, tensorboard, done_marker, backup: EpochBackup) -> list:
    """The callbacks of one phase's fit, in the order they must run (backup.extra: the run's KeepBest)."""
    return [
        EpochSeed(train_ds),
        runlog,  # before CSVLogger: adds learning_rate, trainable_params, timings
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        *([tensorboard] if tensorboard is not None else []),
        # before EpochBackup (which stores its choice of this epoch) and PhaseDone (its file first)
        *([backup.extra] if backup.extra is not None else []),
        PhaseDone(done_marker),  # before EpochBackup deletes its backup
        backup,
    ]


def csv_rows_before(path, epoch: int) -> int:
    """Keep only the rows of epochs < `epoch` in a CSVLogger file; returns how many remain.

    A run killed after CSVLogger wrote an epoch but before the backup recorded
    it would otherwise repeat that epoch's row when it resumes.
    """
    path = Path(path)
    if not path.exists():
        return 0
    lines = path.read_text().splitlines()
    if not lines:
        return 0
    header, rows = lines[0], lines[1:]
    keep = [r for r in rows if r and int(float(r.split(",", 1)[0])) < epoch]
    if len(keep) != len(rows):
        log.info(
            "history %s: dropping %d row(s) of epochs >= %d (not in the backup)", path, len(rows) - len(keep), epoch
        )
        atomic.write_bytes(path, ("\n".join([header, *keep]) + "\n").encode())
    return len(keep)
