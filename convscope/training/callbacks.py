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
import time
from pathlib import Path

import keras

from convscope.training.metrics import atomic_write_bytes

log = logging.getLogger(__name__)


class EpochSeed(keras.callbacks.Callback):
    """Tell the training dataset which epoch starts, before its first batch is read."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.dataset.set_epoch(epoch)


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

    Listed before BackupAndRestore, whose on_train_end deletes its backup: a
    kill between the two leaves the marker, never neither.
    """

    def __init__(self, path):
        super().__init__()
        self.path = Path(path)

    def on_train_end(self, logs=None):
        tmp = self.path.with_name(f".tmp-{self.path.name}")
        self.model.save_weights(str(tmp))
        tmp.replace(self.path)


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
            except Exception as e:  # noqa: BLE001 - any failure means no TensorBoard logs
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
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def close(self):
        """Flush and close the event files (train_run calls it once all phases are done)."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            try:
                writer.close()
            except Exception:  # noqa: BLE001, S110 - closing after a failure: nothing more to report
                pass


class EpochBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore at epoch ends only, without its batch hooks.

    Its on_train_batch_end only counts batches for save_freq=N; left in
    place it would make Keras wait for every step's logs (see module doc).
    """

    on_train_batch_end = keras.callbacks.Callback.on_train_batch_end

    def __init__(self, backup_dir):
        super().__init__(str(backup_dir), save_freq="epoch", double_checkpoint=True)


def phase_callbacks(train_ds, runlog: RunLog, history_csv, tensorboard, done_marker, backup_dir) -> list:
    """The callbacks of one phase's fit, in the order they must run."""
    return [
        EpochSeed(train_ds),
        runlog,  # before CSVLogger: adds learning_rate, trainable_params, timings
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        *([tensorboard] if tensorboard is not None else []),
        PhaseDone(done_marker),  # before BackupAndRestore deletes its backup
        EpochBackupAndRestore(backup_dir),
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
        log.info("history %s: dropping %d row(s) of epochs >= %d (not in the backup)", path, len(rows) - len(keep), epoch)
        atomic_write_bytes(path, ("\n".join([header, *keep]) + "\n").encode())
    return len(keep)
