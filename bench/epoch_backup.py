"""Per-epoch backup: what it adds to each epoch, ours (EpochBackup) against Keras' BackupAndRestore.

Trains one model three ways in one process, on short epochs where the backup
matters (a GPU epoch of a few hundred images per class takes well under a
second): no backup (the reference), keras.callbacks.BackupAndRestore as the
run used it before (per epoch, double checkpoint), and convscope's EpochBackup
(host copy, then a writer thread). Prints each one's epoch time (from one
epoch's start to the next one's, so the epoch-end callbacks count) and the
ratio of the overheads over the reference.

    .venv/bin/python bench/epoch_backup.py [--backbone resnet50 --size 32 --epochs 8 --backend tensorflow]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=2, help="training steps per epoch")
    p.add_argument("--epochs", type=int, default=8, help="epochs per variant (the first is not counted)")
    p.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    from convscope import backend

    backend.select(args.backend, threads=args.threads)
    import keras
    import numpy as np

    from convscope.models import build
    from convscope.training import callbacks as cb

    build.configure_precision()
    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    x = rng.integers(0, 256, size=(n, args.size, args.size, 3), dtype=np.uint8)
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, n)]

    class EpochStarts(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.starts = []

        def on_epoch_begin(self, epoch, logs=None):
            self.starts.append(time.perf_counter())

        def on_train_end(self, logs=None):
            self.starts.append(time.perf_counter())

    variants = {
        "no backup": lambda d: [],
        "keras BackupAndRestore": lambda d: [keras.callbacks.BackupAndRestore(str(d), double_checkpoint=True)],
        "convscope EpochBackup": lambda d: [cb.EpochBackup(d)],
    }
    epoch_s = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in variants.items():
            model = build.build_classifier(args.backbone, 3, input_size=args.size, weights="none", seed=1)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
            params = model.count_params()
            timer = EpochStarts()
            # the timer last: an epoch ends once every backup callback has returned
            model.fit(
                x,
                y,
                batch_size=args.batch,
                epochs=args.epochs,
                verbose=0,
                callbacks=[*make(Path(tmp) / name.replace(" ", "-")), timer],
            )
            epoch_s[name] = statistics.median(b - a for a, b in zip(timer.starts[1:-1], timer.starts[2:]))
            keras.backend.clear_session()
    base = epoch_s["no backup"]
    keras_extra = epoch_s["keras BackupAndRestore"] - base
    ours_extra = epoch_s["convscope EpochBackup"] - base
    print(
        f"per-epoch backup: {args.backbone}@{args.size} ({params / 1e6:.1f} M parameters, Adam), "
        f"{n} images/epoch, backend {args.backend}"
    )
    for name, s in epoch_s.items():
        print(f"  {name + ':':26s} {s:.3f} s per epoch")
    print(
        f"  added per epoch: keras {keras_extra:.3f} s, ours {ours_extra:.3f} s; "
        f"ratio keras / ours {keras_extra / max(ours_extra, 1e-3):.1f}"
    )
    return {"epoch_s": epoch_s, "keras_extra_s": keras_extra, "ours_extra_s": ours_extra}


if __name__ == "__main__":
    main()
