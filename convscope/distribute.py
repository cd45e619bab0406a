"""Data-parallel training over the GPUs of one job (one host, several devices).

A train job given N > 1 GPUs (resources gpu=N; on SLURM `sbatch --gpus=N`)
builds, compiles, fits and predicts inside `scope(N)`:

- JAX: keras.distribution.DataParallel over N devices: variables replicated,
  every batch split along its first axis, gradients all-reduced by XLA.
- TensorFlow: tf.distribute.MirroredStrategy over N devices; the model and its
  optimizer are created in the strategy's scope and Keras' fit uses it.

Both split a batch into N equal parts, so every batch fed to the model must
hold a multiple of N samples (JAX refuses others; TensorFlow fails on some):
`Replicas.batches` trims training batches and pads evaluation batches (with
zero sample weight, so compile(weighted_metrics=...) stay exact), and
`Replicas.predict` drops the padding again.

The devices are the backend's GPUs; on a machine without any, its CPU devices,
of which there is one unless forced for testing
(XLA_FLAGS=--xla_force_host_platform_device_count=N for JAX,
tf.config.set_logical_device_configuration for TensorFlow).

Keras is imported lazily: the backend must be selected (convscope.backend.select)
before anything here runs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os

log = logging.getLogger(__name__)


def devices() -> list[str]:
    """The devices data parallelism can use: the backend's GPUs, else its CPU devices."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        # jax.devices() lists the default platform: GPUs when there are any.
        return [f"{d.platform}:{d.id}" for d in jax.devices()]
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    raise NotImplementedError(
        f"multi-GPU training supports the jax and tensorflow backends, not {keras.backend.backend()!r} "
        "(config key train.backend)"
    )


def replica_count(n_gpus: int, available: int) -> int:
    """How many replicas a job given n_gpus GPUs runs when the backend sees `available` devices."""
    n_gpus = int(n_gpus or 0)
    if n_gpus <= 1:
        return 1
    if available < n_gpus:
        log.warning(
            "this job was given %d GPUs but the backend sees %d device(s) (CUDA_VISIBLE_DEVICES=%s): "
            "training on %d; check that the GPU build of the backend is installed (pip install -e '.[gpu]' "
            "or jax[cuda12])",
            n_gpus,
            available,
            os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
            max(1, available),
        )
    return max(1, min(n_gpus, available))


class Replicas:
    """What a training loop needs to know inside scope(): the replica count and batch rules."""

    def __init__(self, n: int, devices: list[str], backend: str | None):
        self.n = int(n)
        self.devices = list(devices)
        self.backend = backend

    def batches(self, dataset, *, training: bool):
        """`dataset` (a keras.utils.PyDataset of (x, y) batches) with batch sizes that split evenly.

        training=True drops the last few samples of a batch that does not split
        (at most n-1 per batch: only the final, partial batch when batch_size is
        a multiple of n; the shuffle drops different samples each epoch).
        training=False pads such a batch with copies of its last sample, weighted
        zero, so that evaluation sees every sample once: metrics passed to
        compile(weighted_metrics=...) are exact (plain `metrics` ignore sample
        weights and count the copies); the loss divides by the padded batch size.
        See predict() for scores.
        """
        if self.n <= 1:
            return dataset
        batch_size = getattr(dataset, "batch_size", None)
        if training and batch_size is not None and int(batch_size) % self.n:
            raise ValueError(
                f"batch size {batch_size} does not split over {self.n} GPUs; make train.grid.batch_size "
                f"a multiple of {self.n} (it is the global batch: each GPU gets batch_size / {self.n})"
            )
        return even_batches(dataset, self.n, pad=not training)

    def predict(self, model, dataset):
        """model.predict over every sample of `dataset`, exactly len(samples) rows."""
        if self.n <= 1:
            return model.predict(dataset, verbose=0)
        even = even_batches(dataset, self.n, pad=True, weights=False)
        return model.predict(even, verbose=0)[: even.samples]


def even_batches(dataset, n: int, *, pad: bool, weights: bool = True):
    """A keras.utils.PyDataset view of `dataset` whose every batch holds a multiple of n samples.

    Batches come from the wrapped dataset, so its epoch state (shuffle seed) still
    applies. pad=False trims a batch to a multiple of n (a final batch smaller than
    n is left out); pad=True repeats its last sample instead, with sample weight 0
    (weights=True) or without weights (for predict, which drops the extra rows).
    """
    return _even_batches_class()(dataset, n, pad=pad, weights=weights)


@functools.cache
def _even_batches_class():
    import keras
    import numpy as np

    class _EvenBatches(keras.utils.PyDataset):
        def __init__(self, dataset, n, *, pad, weights):
            super().__init__(
                workers=getattr(dataset, "workers", 1),
                use_multiprocessing=getattr(dataset, "use_multiprocessing", False),
                max_queue_size=getattr(dataset, "max_queue_size", 10),
            )
            self.dataset, self.n, self.pad, self.weights = dataset, int(n), pad, weights
            batches = len(dataset)
            first = len(dataset[0][0]) if batches else 0
            last = len(dataset[batches - 1][0]) if batches else 0
            self.samples = first * (batches - 1) + last if batches else 0
            # Trimming empties a final batch smaller than n: leave it out.
            self._len = batches - 1 if batches and not pad and last < self.n else batches

        def __len__(self):
            return self._len

        def __getitem__(self, index):
            batch = self.dataset[index]
            if not isinstance(batch, (tuple, list)):
                batch = (batch,)  # predict datasets may yield images alone
            x = batch[0]
            y = batch[1] if len(batch) > 1 else None
            sw = batch[2] if len(batch) > 2 else None
            size = len(x)
            rest = size % self.n
            if not self.pad:
                if not rest:
                    return batch
                keep = size - rest
                return tuple(part[:keep] for part in (x, y, sw) if part is not None)
            extra = (self.n - rest) % self.n
            if extra:
                reps = np.full(extra, size - 1)
                x = np.concatenate([x, np.asarray(x)[reps]])
                if y is not None:
                    y = np.concatenate([y, np.asarray(y)[reps]])
            if y is None:
                return (x,)
            if not self.weights:
                return x, y
            # Every batch carries weights, so that Keras sees one structure throughout.
            sw = np.ones(size, dtype="float32") if sw is None else np.asarray(sw, dtype="float32")
            return x, y, np.concatenate([sw, np.zeros(extra, dtype="float32")])

        def on_epoch_begin(self):
            if hasattr(self.dataset, "on_epoch_begin"):
                self.dataset.on_epoch_begin()

        def on_epoch_end(self):
            if hasattr(self.dataset, "on_epoch_end"):
                self.dataset.on_epoch_end()

    return _EvenBatches


@contextlib.contextmanager
def scope(n_gpus: int):
    """Build, compile, fit and predict inside this to train on n_gpus devices at once.

    Yields a Replicas; with one device (n_gpus <= 1, or only one visible) it
    changes nothing and its batches()/predict() pass through.
    """
    import keras

    backend = keras.backend.backend()
    if int(n_gpus or 0) <= 1:
        yield Replicas(1, [], backend)
        return
    found = devices()
    n = replica_count(n_gpus, len(found))
    if n <= 1:
        yield Replicas(1, found[:1], backend)
        return
    use = found[:n]
    log.info("data-parallel training over %d devices (%s backend): %s", n, backend, ", ".join(use))
    if backend == "jax":
        distribution = keras.distribution.DataParallel(devices=use)
        with distribution.scope():
            yield Replicas(n, use, backend)
    else:
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(use)
        with strategy.scope():
            yield Replicas(n, use, backend)
