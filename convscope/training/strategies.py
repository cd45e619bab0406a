"""What each strategy trains, and when: a run is a list of phases.

A phase is one model.fit over a range of epochs at one tuning depth and
learning rate. finetune and scratch are one phase; progressive is head-only
first, then one more block every `progressive.every` epochs, each phase at
the previous learning rate times `progressive.lr_decay`, up to tune_depth.
Changing which weights train needs a new compile (Keras fixes the trainable
variables of its train step then), so each phase compiles with a fresh
optimizer; EpochBackup keeps one backup per phase for the same reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from convscope import backbones as registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    index: int
    depth: object  # int or "all"
    learning_rate: float
    start: int  # first epoch (0-based, absolute)
    end: int  # one past the last epoch

    @property
    def epochs(self) -> int:
        return self.end - self.start


def phases(
    strategy: str, backbone: str, hp: dict, progressive: dict | None = None, head: str = "pooled"
) -> list[Phase]:
    """The run's phases; `head` (fc / pooled) decides the blocks progressive walks (registry.tune_blocks)."""
    epochs, lr = int(hp["epochs"]), float(hp["learning_rate"])
    if strategy == "finetune":
        return [Phase(0, hp["tune_depth"], lr, 0, epochs)]
    if strategy == "scratch":
        return [Phase(0, "all", lr, 0, epochs)]
    if strategy != "progressive":
        raise ValueError(f"strategy {strategy!r} does not train with fit (allowed: finetune, progressive, scratch)")
    progressive = progressive or {}
    every, decay = int(progressive["every"]), float(progressive["lr_decay"])
    n_blocks = len(registry.tune_blocks(backbone, head))
    target = hp["tune_depth"]
    depths: list = list(range(0, (n_blocks if target == "all" else int(target)) + 1))
    if target == "all":
        depths[-1] = "all"
    out = []
    for i, depth in enumerate(depths):
        start = i * every
        if start >= epochs:
            log.warning(
                "progressive schedule of %s: %d epochs reach depth %s, not the tune_depth %s "
                "(raise train.grid.epochs or lower train.progressive.every)",
                backbone,
                epochs,
                out[-1].depth,
                target,
            )
            break
        end = epochs if i == len(depths) - 1 else min(epochs, start + every)
        out.append(Phase(i, depth, lr * decay**i, start, end))
    return out


def optimizer(name: str, learning_rate: float):
    import keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate)
    raise ValueError(f"config key train.grid.optimizer: {name!r} unknown; allowed: adam, sgd, adamw, rmsprop")


def compile_phase(model, phase: Phase, hp: dict, num_classes: int, jit_compile) -> None:
    import keras

    from convscope.training.metrics import top_k

    model.compile(
        optimizer=optimizer(hp["optimizer"], phase.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(hp["label_smoothing"])),
        # weighted: multi-GPU validation pads batches with zero-weight samples (the
        # same figures as plain metrics when there are no weights)
        weighted_metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=top_k(num_classes), name="top_k"),
        ],
        jit_compile=jit_compile,
    )
    from convscope import backend

    backend.keep_compiled(model)
