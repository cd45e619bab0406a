"""Pretraining: a backbone trained on a source image set, the base that target runs start from.

Config `pretrain.classes` names the source classes (crawled like the target
classes, into R/raw/{cls}/, with the same per-class source options); a backbone
with `weights: pretrained` then starts its finetune, progressive and features
runs from R/pretrained/{backbone}/base.weights.h5, which this module writes
together with pretrain.json, the record of what the base was trained on
(classes and image counts, a digest of the images, settings, per-epoch
history, the kept epoch). Without ImageNet weights (the offline demo) this is
how transfer is shown; with your own images it is how a larger related set
you have helps a small target set.

Source images are read from each class's crawl ledger (raw/{cls}/manifest.csv,
rows with status ok), decoded and resized as prepare does; a file that fails
to decode is left out, logged and listed in the record. A fixed fraction
(`val_fraction`, chosen by each file's sha256, so stable when images are
added) validates; the weights of the epoch with the lowest validation loss
are kept (callbacks.KeepBest).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convscope import atomic, layout
from convscope import backend as backend_lib

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceSet:
    x: np.ndarray  # uint8 N x size x size x 3
    y: np.ndarray  # int N, index into classes
    val: np.ndarray  # bool N
    counts: dict  # class -> images used
    digest: str  # sha256 over the sorted (class, file sha256) pairs: which images trained the base
    unreadable: list  # files left out, with the reason


def _ledger_files(raw_root: Path, cls: str) -> list[tuple[str, str]]:
    """(file, sha256) of the class's images that the crawl stored (status ok), in file order."""
    manifest = raw_root / cls / layout.LEDGER
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest}: no crawl ledger for source class {cls!r} (config key pretrain.classes)")
    with open(manifest, newline="") as f:
        rows = [(r["file"], r["sha256"]) for r in csv.DictReader(f) if r["status"] == "ok"]
    return sorted(rows)


def _is_val(sha256: str, fraction: float) -> bool:
    return int(sha256[:8], 16) / 0xFFFFFFFF < fraction


def load_source(raw_root, classes: list[str], size: int, resize: str, val_fraction: float) -> SourceSet:
    from convscope.data import imageio

    raw_root = Path(raw_root)
    xs, ys, val, keys, unreadable, counts = [], [], [], [], [], {}
    for label, cls in enumerate(classes):
        files = _ledger_files(raw_root, cls)
        used = 0
        for file, sha in files:
            path = raw_root / cls / file
            try:
                img = imageio.load_rgb(path, draft_size=(size, size))
                xs.append(np.asarray(imageio.resize_square(img, size, resize), dtype=np.uint8))
            except Exception as e:
                unreadable.append({"file": f"{cls}/{file}", "reason": str(e)})
                log.warning("source image %s left out: %s", path, e)
                continue
            ys.append(label)
            val.append(_is_val(sha, val_fraction))
            keys.append(f"{cls}/{sha}")
            used += 1
        if used == 0:
            raise ValueError(
                f"source class {cls!r} has no readable images in {raw_root / cls} (config key pretrain.classes)"
            )
        counts[cls] = used
        log.info("source class %s: %d images", cls, used)
    val_mask = np.array(val)
    if val_mask.all() or not val_mask.any():
        raise ValueError(f"pretrain.val_fraction {val_fraction}: leaves no training or no validation images")
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return SourceSet(np.stack(xs), np.array(ys), val_mask, counts, digest, unreadable)


@dataclass(frozen=True)
class PretrainSpec:
    """What changes one backbone's pretrained base (convscope.config.pretrain_params, the pretrain rule's params)."""

    backbone: str
    input_size: int
    classes: list  # the source classes
    settings: dict  # the `pretrain` section's training keys (epochs, learning_rate, batch_size,
    # optimizer, dropout, augment, val_fraction, seed), recorded as given
    resize: str  # prepare.resize
    backend: str  # train.backend


def _train_base(spec: PretrainSpec, data: SourceSet):
    """Build the classifier from random weights and fit it on the source set; returns (model, fit, kept)."""
    from convscope.models import build
    from convscope.training import callbacks as cb
    from convscope.training import strategies

    settings, n_classes = spec.settings, len(spec.classes)
    onehot = np.eye(n_classes, dtype="float32")[data.y]
    train, val = ~data.val, data.val
    model = build.build_classifier(
        spec.backbone,
        n_classes,
        input_size=spec.input_size,
        weights="none",
        dropout=float(settings["dropout"]),
        augment=settings["augment"],
        seed=int(settings["seed"]),
    )
    build.set_tune_depth(model, spec.backbone, "all")
    phase = strategies.Phase(0, "all", float(settings["learning_rate"]), 0, int(settings["epochs"]))
    hp = {"optimizer": settings["optimizer"], "label_smoothing": 0.0}
    strategies.compile_phase(model, phase, hp, n_classes, backend_lib.jit_compile("auto"))
    best = cb.KeepBest("val_loss")
    fit = model.fit(
        data.x[train],
        onehot[train],
        batch_size=int(settings["batch_size"]),
        epochs=phase.end,
        validation_data=(data.x[val], onehot[val]),
        callbacks=[
            cb.StopOnNaN(
                f"pretraining of {spec.backbone}", f"config key pretrain.learning_rate (now {phase.learning_rate:g})"
            ),
            cb.RunLog("all", int(train.sum())),
            best,
        ],
        shuffle=True,
        verbose=0,
    )
    kept = best.apply(model, last_epoch=phase.end - 1)
    return model, fit, kept


def _history(fit) -> list[dict]:
    return [
        {
            "epoch": i,
            **{k: round(float(v[i]), 5) for k, v in fit.history.items() if k in _HISTORY_KEYS},
        }
        for i in range(len(fit.history["loss"]))
    ]


def _record(spec: PretrainSpec, data: SourceSet, history: list[dict], kept: dict, out: Path) -> dict:
    """pretrain.json, all but wall_s and the versions."""
    from convscope.models.weights import sha256_file

    return {
        "backbone": spec.backbone,
        "input_size": spec.input_size,
        "classes": list(spec.classes),
        "images": data.counts,
        "train_images": int((~data.val).sum()),
        "val_images": int(data.val.sum()),
        "images_sha256": data.digest,
        "unreadable": data.unreadable,
        "settings": dict(spec.settings),
        "resize": spec.resize,
        "history": history,
        "kept": kept,
        "val_accuracy": history[kept["epoch"]]["val_accuracy"],
        "chance": round(1 / len(spec.classes), 4),
        "weights_file": layout.PRETRAINED_BASE,
        "weights_sha256": sha256_file(out / layout.PRETRAINED_BASE),
    }


def pretrain(*, raw_root, out_dir, spec: PretrainSpec, threads: int = 1) -> dict:
    """Train `spec.backbone` from random weights on the source classes; write its base and the record."""
    t_start = time.perf_counter()
    backend_lib.select(spec.backend, threads=threads)
    import keras

    from convscope.models import build

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_source(raw_root, spec.classes, spec.input_size, spec.resize, float(spec.settings["val_fraction"]))
    log.info(
        "pretraining %s@%d on %d source classes: %d train / %d val images, %d epochs",
        spec.backbone,
        spec.input_size,
        len(spec.classes),
        int((~data.val).sum()),
        int(data.val.sum()),
        spec.settings["epochs"],
    )
    model, fit, kept = _train_base(spec, data)
    with atomic.path(out / layout.PRETRAINED_BASE) as tmp:
        build.base_of(model).save_weights(str(tmp))
    record = _record(spec, data, _history(fit), kept, out)
    record.update(
        {
            "wall_s": round(time.perf_counter() - t_start, 2),
            "versions": backend_lib.versions(),
            "keras": keras.__version__,
        }
    )
    atomic.write_json(out / layout.PRETRAIN_RECORD, record)
    log.info(
        "pretrained %s: kept epoch %d, val accuracy %.3f (chance %.2f), %.1f s",
        spec.backbone,
        kept["epoch"] + 1,  # 1-based, as the epoch log lines (pretrain.json keeps the 0-based index)
        record["val_accuracy"],
        record["chance"],
        record["wall_s"],
    )
    return record


_HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
