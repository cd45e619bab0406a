"""Input pipeline: the training dataset's read-ahead against Keras' own threaded enqueuer, in one run.

    .venv/bin/python bench/input_pipeline.py                       # 224 px, batch 128, 20 batches
    .venv/bin/python bench/input_pipeline.py --size 299 --batches 10 --step-ms 40

Both sides serve the same prepared uint8 memmap, shuffled, through Keras'
PyDatasetAdapter, as model.fit does, to a consumer that spends --step-ms per
batch (sleeping, as the host does while the device runs a step):

  ours    convscope.training.data.MemmapDataset(workers=N): reads N threads ahead
          itself; Keras iterates it directly
  keras   the same batches with Keras' OrderedEnqueuer (PyDataset workers=N),
          which polls an empty queue with a 0.1 s timeout when every epoch ends
  floor   batches x step-ms: what a pipeline that never makes the step wait takes

Prints the median epoch time of each, their overhead over the floor, and
keras/ours (the target: ours at least 1.1x faster on 20-batch epochs, the size of
an epoch of a few hundred images per class).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convscope import layout  # noqa: E402 - the layout is pure paths: no Keras import

os.environ.setdefault("KERAS_BACKEND", "jax")  # the adapter is backend-neutral; JAX imports fastest


def epoch_times(dataset, epochs: int, step_s: float) -> list[float]:
    from convscope import keras_compat

    adapter = keras_compat.py_dataset_adapter(dataset, shuffle=False)  # fit(shuffle=False): the dataset shuffles
    times = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        start = time.perf_counter()
        adapter.on_epoch_begin()
        for _batch in adapter.get_numpy_iterator():
            time.sleep(step_s)
        adapter.on_epoch_end()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--batches", type=int, default=20, help="batches per epoch")
    p.add_argument("--epochs", type=int, default=6, help="epochs per side (the first is not counted)")
    p.add_argument("--step-ms", type=float, default=25.0, help="time the consumer spends per batch")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)

    from convscope.training.data import MemmapDataset, Reading

    n = args.batch * args.batches
    with tempfile.TemporaryDirectory(prefix="convscope-bench-") as tmp:
        images, labels = layout.prepared_in(tmp, "train"), layout.prepared_in(tmp, "train", layout.PREPARED_LABELS)
        rng = np.random.default_rng(0)
        np.save(images, rng.integers(0, 256, (n, args.size, args.size, 3), dtype=np.uint8))
        np.save(labels, (np.arange(n) % 3).astype("int32"))

        def make(workers):
            return MemmapDataset(
                images, labels, args.batch, 3, Reading(shuffle=True, seed=1, drop_remainder=True, workers=workers)
            )

        keras_side = make(1)
        keras_side.workers = args.workers  # Keras' OrderedEnqueuer with N threads instead
        step_s = args.step_ms / 1000
        ours = statistics.median(epoch_times(make(args.workers), args.epochs, step_s)[1:])
        keras = statistics.median(epoch_times(keras_side, args.epochs, step_s)[1:])
    floor = args.batches * step_s
    figures = {"ours_s": ours, "keras_s": keras, "floor_s": floor, "ratio_keras_vs_ours": keras / ours}
    print(
        f"\ninput pipeline: {args.batches} batches of {args.batch}x{args.size}x{args.size}x3 uint8 per epoch, "
        f"{args.step_ms:g} ms per step, {args.workers} workers"
    )
    print(
        f"  ours (MemmapDataset read-ahead):  {ours * 1000:7.1f} ms/epoch (+{(ours - floor) * 1000:.1f} over the floor)"
    )
    print(f"  keras (threaded OrderedEnqueuer): {keras * 1000:7.1f} ms/epoch (+{(keras - floor) * 1000:.1f})")
    print(f"  floor (steps only):               {floor * 1000:7.1f} ms/epoch")
    print(f"  ratio keras / ours: {figures['ratio_keras_vs_ours']:.3f} (target >= 1.1 at 20 batches per epoch)")
    return figures


if __name__ == "__main__":
    main()
