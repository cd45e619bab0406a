"""Prepared arrays as Keras datasets: uint8 memory maps, batches cut on demand.

R/prepared/{size}/{split}.npy is read with np.load(mmap_mode="r"), so a job
touches only the pages of the batches it uses and several jobs share the OS
page cache. Batches stay uint8 until the model's input casts them: four times
less host-to-device traffic than float32.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from convscope import layout

MAX_READ_THREADS = 4


def split_paths(prepared_dir, split: str) -> tuple[Path, Path]:
    return layout.prepared_in(prepared_dir, split), layout.prepared_in(prepared_dir, split, layout.PREPARED_LABELS)


@dataclass(frozen=True)
class Reading:
    """How a MemmapDataset orders, cuts and reads its batches (see MemmapDataset)."""

    shuffle: bool = False
    seed: int = 0
    drop_remainder: bool = False
    for_predict: bool = False
    workers: int = 1
    max_queue_size: int = 8


class MemmapDataset(keras.utils.PyDataset):
    """(uint8 images, one-hot float32 labels) batches from a prepared split.

    reading.shuffle: a new order every epoch, a pure function of (seed, epoch), so a
    resumed run sees the same order for an epoch as an uninterrupted one. The
    training loop tells the dataset its epoch (callbacks.EpochSeed) before the
    epoch's first batch is read. Keras' own `fit(shuffle=True)` reshuffles batch
    indices with an unseeded RNG; pass shuffle=False to fit.

    workers: threads (at most MAX_READ_THREADS) that read the next batches
    ahead while the device trains on this one. The dataset reads ahead itself
    rather than handing `workers` to Keras: Keras' threaded enqueuer stops at
    every epoch end by polling an empty queue with a 0.1 s timeout, an idle GPU
    for ~0.1 s per epoch (and per validation pass) that on small datasets
    costs 10-20% of training time (bench/input_pipeline.py measures both). Keras iterates batches in order
    0, 1, 2, ... from one thread, which is what the read-ahead serves; any
    other access still works, read on the spot.

    drop_remainder (training): every batch has the same shape, so the train
    step is traced/compiled once, not again for a short last batch (under JAX
    and XLA each new shape is a new compilation). The dropped images differ
    from epoch to epoch. for_predict: yield images only, the last batch padded
    to full size for the same reason; predictions past `len(x)` are padding.
    """

    def __init__(self, images, labels, batch_size: int, num_classes: int, reading: Reading = Reading()):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=reading.max_queue_size)
        # A batch read is one memcpy from the page cache: a few threads keep any GPU fed.
        self.prefetch_workers = max(1, min(int(reading.workers), MAX_READ_THREADS))
        self.read_ahead = (
            max(2, min(int(reading.max_queue_size), 2 * self.prefetch_workers)) if self.prefetch_workers > 1 else 0
        )
        self._pool = None
        self._pending = {}  # (epoch, batch index) -> Future of that batch
        self.images_path = Path(images)
        self.x = np.load(self.images_path, mmap_mode="r")
        self.y = np.load(labels).astype("int64")
        self._check(labels, num_classes)
        self.batch_size = int(batch_size)
        self.num_classes = int(num_classes)
        self.shuffle = reading.shuffle
        self.seed = int(reading.seed)
        self.drop_remainder = bool(reading.drop_remainder) and len(self.x) >= self.batch_size
        self.for_predict = bool(reading.for_predict)
        self.epoch = 0
        self._order_epoch = None
        self._order = np.arange(len(self.x))

    def _check(self, labels, num_classes: int) -> None:
        """A prepared split: uint8 N x H x W x 3 images, as many labels, all of a configured class."""
        if self.x.ndim != 4 or self.x.shape[-1] != 3 or self.x.dtype != np.uint8:
            raise ValueError(
                f"{self.images_path}: expected uint8 N x H x W x 3 (a prepared split), got {self.x.dtype} {self.x.shape}"
            )
        if len(self.x) != len(self.y):
            raise ValueError(f"{self.images_path}: {len(self.x)} images but {len(self.y)} labels in {labels}")
        if len(self.x) == 0:
            raise ValueError(f"{self.images_path}: the split is empty; check the split fractions and class counts")
        if self.y.min() < 0 or self.y.max() >= num_classes:
            raise ValueError(
                f"{labels}: labels span {self.y.min()}..{self.y.max()} but the config has {num_classes} classes; "
                "re-run prepare after changing classes"
            )

    def __len__(self) -> int:
        if self.drop_remainder:
            return len(self.x) // self.batch_size
        return math.ceil(len(self.x) / self.batch_size)

    @property
    def samples_per_epoch(self) -> int:
        return min(len(self) * self.batch_size, len(self.x))

    @property
    def image_shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """Sample order of the current epoch."""
        if self.shuffle and self._order_epoch != self.epoch:
            rng = np.random.default_rng([self.seed, self.epoch])
            self._order = rng.permutation(len(self.x))
            self._order_epoch = self.epoch
        return self._order

    def _indices(self, index: int) -> np.ndarray:
        idx = self.order()[index * self.batch_size : (index + 1) * self.batch_size]
        return np.sort(idx)  # read the memory map in file order; a batch is a set anyway

    def __getitem__(self, index: int):
        index = int(index)
        if not self.read_ahead:
            return self._read(self._indices(index))
        key = (self.epoch, index)
        future = self._pending.pop(key, None)
        # Batches read ahead for another epoch or for batches already passed are stale.
        for stale in [k for k in self._pending if k[0] != self.epoch or k[1] < index]:
            self._pending.pop(stale).cancel()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.prefetch_workers, thread_name_prefix="convscope-read")
        for ahead in range(index + 1, min(len(self), index + 1 + self.read_ahead)):
            if (self.epoch, ahead) not in self._pending:
                # indices taken here, on the caller's thread: order() is not thread-safe
                self._pending[(self.epoch, ahead)] = self._pool.submit(self._read, self._indices(ahead))
        return future.result() if future is not None else self._read(self._indices(index))

    def close(self) -> None:
        """Stop the read-ahead threads (they also end with the process)."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _read(self, idx: np.ndarray):
        """One batch: images (uint8) and one-hot labels, or images alone for predict."""
        x = np.asarray(self.x[idx])
        if self.for_predict:
            if len(idx) < self.batch_size and len(self.x) > self.batch_size:
                x = np.concatenate([x, np.zeros((self.batch_size - len(idx), *x.shape[1:]), x.dtype)])
            return (x,)
        y = np.zeros((len(idx), self.num_classes), dtype="float32")
        y[np.arange(len(idx)), self.y[idx]] = 1.0
        return x, y


def predict(model, dataset: MemmapDataset, replicas=None):
    """model.predict over every image of a dataset made with for_predict=True (padding cut off).

    `replicas` (convscope.distribute.Replicas) evens out batches for multi-device predict.
    """
    scores = replicas.predict(model, dataset) if replicas is not None else model.predict(dataset, verbose=0)
    return scores[: len(dataset.x)]
