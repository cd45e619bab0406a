"""One grid run of a trained strategy (finetune, progressive, scratch), start to outputs.

Outputs in out_dir (R/models/{backbone}/{run}/): model.keras, history.csv,
metrics.json (see convscope.training.metrics), tensorboard/. Each is written
to a temporary file and renamed into place, so a half-written file is never
taken for a result.

Resuming: everything that must survive a kill lives in out_dir/backup/ (not
a Snakemake output, so Snakemake does not delete it when a job fails):
  params.json          the run's settings; a backup made under other settings
                       is discarded rather than resumed
  history.csv          CSVLogger(append=True), trimmed to the backed-up epochs
  phase{i}/            callbacks.EpochBackup of phase i (per epoch)
  phase{i}.weights.h5  weights at the end of phase i (the phase is done)
A re-run of a killed job resumes from the last completed epoch (from the one
before if the kill came while that epoch's backup was still being written); the
folder is removed once the outputs are in place.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import time
from pathlib import Path

from convscope import atomic, keras_compat, layout, records
from convscope import backend as backend_lib

log = logging.getLogger(__name__)


def distribution_for(n_gpus: int):
    """The context that model building, compiling, fitting and predicting run in.

    The single place where multi-GPU training plugs in: convscope.distribute.scope
    (data parallel: keras.distribution under JAX, MirroredStrategy under TensorFlow).
    It yields a Replicas whose batches() make every batch split evenly over the
    devices; with one device it changes nothing.
    """
    from convscope import distribute

    return distribute.scope(int(n_gpus or 0))


def _fingerprint(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _prepare_backup(work: Path, settings: dict) -> bool:
    """Keep a backup made under the same settings (returns True: resume), else start a new one."""
    stamp = work / "params.json"
    want = _fingerprint(settings)
    if work.exists():
        if stamp.exists() and stamp.read_text() == want:
            log.info("found a backup of this run in %s: resuming", work)
            return True
        log.warning("backup %s was made with other settings: discarding it and starting over", work)
        shutil.rmtree(work)
    work.mkdir(parents=True)
    atomic.write_text(stamp, want)
    return False


def _read_history(path: Path) -> list[dict]:
    import csv

    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def train_run(
    *,
    prepared_dir,
    out_dir,
    backbone: str,
    options: dict,
    input_size: int,
    strategy: str,
    hp: dict,
    classes: list[str],
    backend: str = "tensorflow",
    jit_compile="auto",
    bootstrap: int = 1000,
    tensorboard: bool = True,
    progressive: dict | None = None,
    threads: int = 1,
    n_gpus: int = 0,
    callbacks: tuple = (),
    run_id: str | None = None,
) -> dict:
    """Train one run and write its outputs; returns the metrics dict.

    The keyword arguments from `backbone` to `progressive` are the run's
    settings (convscope.grid.train_params); `callbacks` are extra Keras
    callbacks appended after the run's own (tests use them).
    """
    t_start = time.perf_counter()
    settings = {
        "backbone": backbone, "options": options, "input_size": input_size, "strategy": strategy, "hp": hp,
        "classes": list(classes), "backend": backend, "jit_compile": jit_compile, "bootstrap": bootstrap,
        "tensorboard": tensorboard, "progressive": progressive,
    }
    backend_lib.select(backend, threads=threads)
    import keras

    from convscope.models import build
    from convscope.training import callbacks as cb
    from convscope.training import data, metrics, strategies

    t_imported = time.perf_counter()
    out = Path(out_dir)
    run_id = run_id or out.name
    work = out / "backup"
    if not _prepare_backup(work, settings):
        # TensorBoard logs are not a declared output: drop those of an earlier attempt.
        shutil.rmtree(out / "tensorboard", ignore_errors=True)
    history_tmp = work / "history.csv"

    precision = build.configure_precision()
    plan = strategies.phases(strategy, backbone, hp, progressive)
    num_classes = len(classes)
    batch = int(hp["batch_size"])
    workers = int(threads)  # read-ahead threads of the datasets
    train_ds = data.MemmapDataset(
        *data.split_paths(prepared_dir, "train"), batch, num_classes, shuffle=True, seed=int(hp["seed"]),
        drop_remainder=True, workers=workers,
    )
    val_ds = data.MemmapDataset(*data.split_paths(prepared_dir, "val"), batch, num_classes, workers=workers)
    val_x, test_x = (
        data.MemmapDataset(*data.split_paths(prepared_dir, s), batch, num_classes, for_predict=True, workers=workers)
        for s in ("val", "test")
    )
    if train_ds.image_shape[:2] != (input_size, input_size):
        raise ValueError(
            f"{train_ds.images_path}: images are {train_ds.image_shape[:2]} but {backbone} trains at "
            f"{input_size}x{input_size} (config key backbones.{backbone}.input_size)"
        )
    log.info(
        "run %s/%s: %s, %d phase(s), %d train / %d val / %d test images, backend %s, dtype policy %s",
        backbone, run_id, strategy, len(plan), len(train_ds.x), len(val_ds.x), len(test_x.x),
        keras.backend.backend(), precision,
    )
    tb = cb.EpochTensorBoard(out / "tensorboard") if tensorboard else None
    jit = backend_lib.jit_compile(jit_compile)
    resumed_from = None
    first_fit = None

    with distribution_for(n_gpus) as replicas:
        t_build = time.perf_counter()
        model = build.build_classifier(
            backbone,
            num_classes,
            input_size=input_size,
            dropout=float(hp["dropout"]),
            augment=hp["augment"],
            seed=int(hp["seed"]),
            **strategies.weights_for(strategy, options),
        )
        t_built = time.perf_counter()
        done = [p for p in plan if (work / f"phase{p.index}.weights.h5").exists()]
        start_at = 0
        if done:
            last = done[-1]
            build.set_tune_depth(model, backbone, last.depth)
            model.load_weights(str(work / f"phase{last.index}.weights.h5"))
            start_at = last.index + 1
            resumed_from = last.end
            log.info("phases up to %d done (epoch %d): resuming after them", last.index, last.end)
        for phase in plan[start_at:]:
            build.set_tune_depth(model, backbone, phase.depth)
            strategies.compile_phase(model, phase, hp, num_classes, jit)
            backup = cb.EpochBackup(work / f"phase{phase.index}")
            epoch = cb.backup_epoch(backup.folder)
            if epoch is not None:
                resumed_from = epoch
                log.info("phase %d: resuming at epoch %d from %s", phase.index, epoch, backup.folder)
            cb.csv_rows_before(history_tmp, epoch if epoch is not None else phase.start)
            # EpochBackup sets the model's initial epoch when it restores; a value left
            # by an earlier phase's fit would override this phase's initial_epoch.
            keras_compat.set_initial_epoch(model, None)
            runlog = cb.RunLog(phase.depth, train_ds.samples_per_epoch)
            run_callbacks = [
                *cb.phase_callbacks(train_ds, runlog, history_tmp, tb, work / f"phase{phase.index}.weights.h5", backup),
                *callbacks,
            ]
            log.info(
                "phase %d: epochs %d..%d, tune_depth %s, learning rate %.3g, %d trainable parameters",
                phase.index, phase.start + 1, phase.end, phase.depth, phase.learning_rate,
                cb.trainable_params(model),
            )
            try:
                model.fit(
                    replicas.batches(train_ds, training=True),
                    # padded with zero-weight copies so that every batch splits over the devices
                    validation_data=replicas.batches(val_ds, training=False),
                    epochs=phase.end,
                    initial_epoch=phase.start,
                    callbacks=run_callbacks,
                    shuffle=False,  # MemmapDataset shuffles, seeded per epoch
                    verbose=0,
                )
            finally:
                # An error or Ctrl-C after an epoch end still leaves that epoch's backup whole on disk.
                backup.wait()
            if first_fit is None:
                first_fit = runlog

        if tb is not None:
            tb.close()
        t_trained = time.perf_counter()
        scores_val = data.predict(model, val_x, replicas)
        scores_test = data.predict(model, test_x, replicas)

    history = _read_history(history_tmp)
    report = metrics.split_report(
        val_x.y, scores_val, test_x.y, scores_test, list(classes), bootstrap=bootstrap, seed=int(hp["seed"])
    )
    phase_starts = {p.start for p in plan}
    steady = [r for r in history if int(r["epoch"]) not in phase_starts] or history
    train_s = statistics.median(r["train_s"] for r in steady) if steady else float("nan")
    first_epoch = next((r for r in history if int(r["epoch"]) == 0), None)
    result = {
        "backbone": backbone,
        "run": run_id,
        "strategy": strategy,
        "hp": hp,
        "classes": list(classes),
        "input_size": input_size,
        "weights": strategies.weights_for(strategy, options).get("weights", "imagenet"),
        **report,
        "epochs_trained": len(history),
        "phases": [
            {"index": p.index, "depth": p.depth, "learning_rate": p.learning_rate, "epochs": [p.start, p.end]}
            for p in plan
        ],
        "resumed_from_epoch": resumed_from,
        "train_time_s": round(sum(r.get("epoch_s", 0.0) for r in history), 3),
        "images_per_s": round(train_ds.samples_per_epoch / train_s, 2) if train_s and train_s > 0 else None,
        "fixed_cost_s": {
            "imports": round(t_imported - t_start, 3),
            "setup": round(t_build - t_imported, 3),  # memory maps of the prepared arrays
            "build_and_weights": round(t_built - t_build, 3),
            "first_step": round(first_fit.first_step_s, 3) if first_fit and first_fit.first_step_s else None,
            "first_epoch_overhead": (
                round(first_epoch["train_s"] - train_s, 3) if first_epoch and len(history) > 1 else None
            ),
        },
        "seed": int(hp["seed"]),
        "dtype_policy": precision,
        "jit_compile": bool(model.jit_compile),
        "versions": backend_lib.versions(),
        "tensorboard": {
            "enabled": bool(tensorboard),
            "ok": bool(tensorboard) and tb is not None and tb.error is None,
            "warning": tb.error if tb is not None else None,
        },
    }
    # Outputs, each atomically; metrics.json last, the run's "complete" mark.
    with atomic.path(out / layout.MODEL) as tmp_model:
        model.save(str(tmp_model))
    atomic.write_bytes(out / layout.HISTORY, history_tmp.read_bytes())
    result["wall_s"] = round(time.perf_counter() - t_start, 3)
    result["eval_s"] = round(time.perf_counter() - t_trained, 3)
    records.write_metrics(out / layout.METRICS, records.RunMetrics.from_dict(result, f"run {backbone}/{run_id}"))
    shutil.rmtree(work, ignore_errors=True)
    log.info(
        "run %s/%s done: val accuracy %.3f, test accuracy %.3f (95%% CI %.3f-%.3f), %s images/s, %.1f s",
        backbone, run_id, report["val"]["accuracy"], report["test"]["accuracy"],
        *report["test"]["accuracy_ci95"], result["images_per_s"], result["wall_s"],
    )
    return result
