"""One grid run of a trained strategy (finetune, progressive, scratch), start to outputs.

Outputs in out_dir (R/models/{backbone}/{run}/): model.keras, history.csv,
fit.json (metrics.json but the test split's scores, which the evaluate job adds:
see convscope.training.evaluate), tensorboard/. The job reads the train and val
arrays only, so an edit of the test split never retrains. Each is written
to a temporary file and renamed into place, so a half-written file is never
taken for a result.

Resuming: everything that must survive a kill lives in out_dir/backup/ (not
a Snakemake output, so Snakemake does not delete it when a job fails):
  params.json          the run's settings; a backup made under other settings
                       is discarded rather than resumed
  history.csv          CSVLogger(append=True), trimmed to the backed-up epochs
  phase{i}/            callbacks.EpochBackup of phase i (per epoch)
  phase{i}.weights.h5  weights at the end of phase i (the phase is done)
  best.npz             callbacks.KeepBest at the end of the last finished phase
                       (within a phase, the best-so-far rides in its EpochBackup file)
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from convscope import atomic, keras_compat, layout, records
from convscope import backbones as registry
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
    stamp = layout.BackupFolder(work).settings
    want = _fingerprint(settings)
    if work.exists():
        if stamp.exists() and stamp.read_text() == want:
            log.info("found a backup of this run in %s: resuming", work)
            return True
        log.warning(
            "backup %s was made with other settings: discarding it and starting over",
            work,
        )
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


@dataclass(frozen=True)
class RunSettings:
    """What a run trains and how (convscope.grid.train_params): a change starts the run over."""

    backbone: str
    options: dict
    input_size: int
    strategy: str
    hp: dict
    classes: list
    # config train.*: backend, jit_compile, bootstrap, tensorboard, keep (the epoch whose weights the run keeps)
    backend: str
    jit_compile: object
    bootstrap: int
    tensorboard: bool
    keep: str
    progressive: dict | None = None  # train.progressive, for the progressive strategy only

    @classmethod
    def from_params(cls, params: dict) -> RunSettings:
        """From the train rule's params (all set); a library caller's missing train.* keys take the schema's defaults."""
        missing = [k for k in _TRAIN_KEYS if k not in params]
        if missing:
            from convscope import config as cfg

            train = cfg.defaults("train")
            params = {**{k: train[k] for k in missing}, **params}
        return cls(**params)

    def fingerprint(self) -> dict:
        return {**asdict(self), "classes": list(self.classes)}


_TRAIN_KEYS = ("backend", "jit_compile", "bootstrap", "tensorboard", "keep")


@dataclass(frozen=True)
class JobOptions:
    """How the job runs (the scheduler's share of the machine): never changes the results."""

    threads: int
    n_gpus: int
    jobs_per_gpu: int  # config train.jobs_per_gpu: GPU jobs sharing one GPU
    # time.perf_counter() when the job's script began (convscope.entry.job): the run's fixed
    # costs (imports first) count from there; None: from the call of train_run.
    started: float | None = None

    @classmethod
    def cpu(cls, threads: int = 1) -> JobOptions:
        """A library caller's CPU job: no GPU, so none is shared."""
        return cls(threads=threads, n_gpus=0, jobs_per_gpu=1)


@dataclass
class Clock:
    """Wall-clock marks of one job, the basis of metrics.json fixed_cost_s."""

    start: float = field(default_factory=time.perf_counter)
    marks: dict = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = time.perf_counter()

    def between(self, a: str, b: str) -> float:
        return round(self.marks[b] - (self.start if a == "start" else self.marks[a]), 3)


def train_run(
    *, prepared_dir, out_dir, callbacks: tuple = (), job: JobOptions | None = None, threads: int = 1, **settings
) -> dict:
    """Train one run and write its outputs (out_dir's name is the run's id); returns fit.json's dict.

    settings: the fields of RunSettings (convscope.grid.train_params).
    callbacks: extra Keras callbacks, after the run's own (tests use them).
    job: threads, GPUs and GPU sharing of the job; threads alone: a CPU job's JobOptions.cpu(threads).
    """
    job = job or JobOptions.cpu(threads)
    clock = Clock() if job.started is None else Clock(start=job.started)
    run = RunSettings.from_params(settings)
    backend_lib.select(run.backend, threads=job.threads, jobs_per_gpu=job.jobs_per_gpu)
    import keras  # noqa: F401 - the backend's import, timed as "imports"

    clock.mark("imported")
    out = Path(out_dir)
    try:
        state = _train(run, job, Where(Path(prepared_dir), out), tuple(callbacks), clock)
    except Exception as e:
        if backend_lib.is_out_of_memory(e):
            raise backend_lib.GpuMemoryError(
                backend_lib.out_of_memory_message(e, job.jobs_per_gpu, int(run.hp["batch_size"]))
            ) from e
        raise
    result = _result(run, job, state, clock)
    _write_outputs(state, out, result, clock)
    # last: the run's "complete" mark
    records.write_fit(out / layout.FIT, result, f"run {run.backbone}/{state.run_id}")
    shutil.rmtree(state.work, ignore_errors=True)
    log.info(
        "run %s/%s trained: val accuracy %.3f, %s images/s, %.1f s (the evaluate job scores the test split)",
        run.backbone,
        state.run_id,
        result["val"]["accuracy"],
        result["images_per_s"],
        result["wall_s"],
    )
    return result


@dataclass(frozen=True)
class Where:
    """Where a run reads its prepared arrays and writes its outputs (the folder's name is the run's id)."""

    prepared: Path
    out: Path


@dataclass
class Datasets:
    train: object
    val: object
    val_x: object


@dataclass
class TrainState:
    """What the steps of one run hand each other."""

    run_id: str
    work: Path
    plan: list
    data: Datasets
    model: object = None
    precision: str = ""
    resumed_from: int | None = None
    first_fit: object = None
    tb: object = None
    best: object = None  # callbacks.KeepBest
    kept: dict | None = None  # the epoch model.keras holds
    history: list = field(default_factory=list)
    report: dict = field(default_factory=dict)
    train_cpu_s: float | None = None  # CPU seconds of this process while fitting (all threads)


def _datasets(prepared_dir, run: RunSettings, workers: int) -> Datasets:
    from convscope.training import data

    batch, num_classes = int(run.hp["batch_size"]), len(run.classes)
    train = data.MemmapDataset(
        *data.split_paths(prepared_dir, "train"),
        batch,
        num_classes,
        data.Reading(shuffle=True, seed=int(run.hp["seed"]), drop_remainder=True, workers=workers),
    )
    if train.image_shape[:2] != (run.input_size, run.input_size):
        raise ValueError(
            f"{train.images_path}: images are {train.image_shape[:2]} but {run.backbone} trains at "
            f"{run.input_size}x{run.input_size} (config key backbones.{run.backbone}.input_size)"
        )
    val_paths = data.split_paths(prepared_dir, "val")
    val = data.MemmapDataset(*val_paths, batch, num_classes, data.Reading(workers=workers))
    val_x = data.MemmapDataset(*val_paths, batch, num_classes, data.Reading(for_predict=True, workers=workers))
    return Datasets(train, val, val_x)


def _new_state(run: RunSettings, job: JobOptions, where: Where) -> TrainState:
    """The backup folder (kept when made under the same settings), the phase plan and the datasets."""
    from convscope.models import build
    from convscope.training import callbacks as cb
    from convscope.training import strategies

    out = where.out
    work = out / "backup"
    if not _prepare_backup(work, run.fingerprint()):
        # TensorBoard logs are not a declared output: drop those of an earlier attempt.
        shutil.rmtree(out / "tensorboard", ignore_errors=True)
    backend_lib.tensorflow_memory_limit()
    state = TrainState(
        out.name,
        work,
        strategies.phases(
            run.strategy, run.backbone, run.hp, run.progressive, registry.head(run.backbone, run.options)
        ),
        _datasets(where.prepared, run, int(job.threads)),
    )
    state.precision = build.configure_precision()
    state.best = cb.KeepBest(run.keep, layout.BackupFolder(work).best)
    state.tb = cb.EpochTensorBoard(out / "tensorboard") if run.tensorboard else None
    return state


def _log_start(state: TrainState, run: RunSettings) -> None:
    import keras

    d = state.data
    log.info(
        "run %s/%s: %s, %d phase(s), %d train / %d val images, backend %s, dtype policy %s, env %s",
        run.backbone,
        state.run_id,
        run.strategy,
        len(state.plan),
        len(d.train.x),
        len(d.val.x),
        keras.backend.backend(),
        state.precision,
        backend_lib.job_env(),
    )


def _fit_and_predict(state: TrainState, run: RunSettings, replicas, extra_callbacks, clock: Clock):
    """Build, resume, fit every phase still to do, keep the chosen epoch; returns the val scores."""
    from convscope.models import build
    from convscope.models.weights import weights_for
    from convscope.training import data

    clock.mark("build")
    state.model = build.build_classifier(
        run.backbone,
        len(run.classes),
        input_size=run.input_size,
        dropout=float(run.hp["dropout"]),
        augment=run.hp["augment"],
        seed=int(run.hp["seed"]),
        **weights_for(run.strategy, run.options),
    )
    clock.mark("built")
    jit = backend_lib.jit_compile(run.jit_compile)
    cpu = time.process_time()
    for phase in _phases_to_do(state, run):
        _fit_phase(state, run, phase, replicas, jit, extra_callbacks)
    state.train_cpu_s = round(time.process_time() - cpu, 3)
    if state.tb is not None:
        state.tb.close()
    clock.mark("trained")
    state.kept = state.best.apply(state.model, last_epoch=state.plan[-1].end - 1)
    scores = data.predict(state.model, state.data.val_x, replicas)
    clock.mark("predicted")
    return scores


def _train(run: RunSettings, job: JobOptions, where: Where, extra_callbacks, clock: Clock) -> TrainState:
    """Set up, build, resume, fit every phase still to do, predict val and score it."""
    from convscope.training import metrics

    state = _new_state(run, job, where)
    _log_start(state, run)
    with distribution_for(job.n_gpus) as replicas:
        scores_val = _fit_and_predict(state, run, replicas, extra_callbacks, clock)
    state.history = _read_history(layout.BackupFolder(state.work).history)
    state.report = metrics.val_section(
        (state.data.val_x.y, scores_val), list(run.classes), bootstrap=run.bootstrap, seed=int(run.hp["seed"])
    )
    clock.mark("evaluated")
    return state


def _phases_to_do(state: TrainState, run: RunSettings) -> list:
    """Phases not yet done; the model gets the weights of the last done phase."""
    from convscope.models import build

    backup = layout.BackupFolder(state.work)
    done = [p for p in state.plan if backup.phase_weights(p.index).exists()]
    if not done:
        return list(state.plan)
    last = done[-1]
    build.set_tune_depth(state.model, run.backbone, last.depth)
    state.model.load_weights(str(backup.phase_weights(last.index)))
    state.resumed_from = last.end
    state.best.load()
    log.info("phases up to %d done (epoch %d): resuming after them", last.index, last.end)
    return list(state.plan[last.index + 1 :])


def run_callbacks(state: TrainState, phase, runlog, backup, extra: tuple) -> list:
    """The callback list of one phase's fit: the run's own (convscope.training.callbacks), then `extra`.

    The one place to add a callback every run uses (order matters: see
    callbacks.phase_callbacks).
    """
    from convscope.training import callbacks as cb

    work = layout.BackupFolder(state.work)
    done_marker = work.phase_weights(phase.index)
    return [
        *cb.phase_callbacks(
            state.data.train,
            runlog,
            work.history,
            state.tb,
            done_marker,
            backup,
        ),
        *extra,
    ]


def _fit_phase(state: TrainState, run: RunSettings, phase, replicas, jit, extra_callbacks) -> None:
    from convscope.models import build
    from convscope.training import callbacks as cb
    from convscope.training import strategies

    model, d = state.model, state.data
    build.set_tune_depth(model, run.backbone, phase.depth)
    strategies.compile_phase(model, phase, run.hp, len(run.classes), jit)
    backup = cb.EpochBackup(layout.BackupFolder(state.work).phase_dir(phase.index), extra=state.best)
    epoch = cb.backup_epoch(backup.folder)
    if epoch is not None:
        state.resumed_from = epoch
        log.info("phase %d: resuming at epoch %d from %s", phase.index, epoch, backup.folder)
    cb.csv_rows_before(layout.BackupFolder(state.work).history, epoch if epoch is not None else phase.start)
    # EpochBackup sets the model's initial epoch when it restores; a value left
    # by an earlier phase's fit would override this phase's initial_epoch.
    keras_compat.set_initial_epoch(model, None)
    runlog = cb.RunLog(phase.depth, d.train.samples_per_epoch)
    # First: a diverged epoch must reach neither the backup nor the kept weights.
    stop = cb.StopOnNaN(
        f"run {run.backbone}/{state.run_id}",
        f"its learning rate (config key train.grid.learning_rate, now {phase.learning_rate:g})",
    )
    log.info(
        "phase %d: epochs %d..%d, tune_depth %s, learning rate %.3g, %d trainable parameters",
        phase.index,
        phase.start + 1,
        phase.end,
        phase.depth,
        phase.learning_rate,
        cb.trainable_params(model),
    )
    try:
        model.fit(
            replicas.batches(d.train, training=True),
            # padded with zero-weight copies so that every batch splits over the devices
            validation_data=replicas.batches(d.val, training=False),
            epochs=phase.end,
            initial_epoch=phase.start,
            callbacks=[stop, *run_callbacks(state, phase, runlog, backup, extra_callbacks)],
            shuffle=False,  # MemmapDataset shuffles, seeded per epoch
            verbose=0,
        )
    finally:
        # An error or Ctrl-C after an epoch end still leaves that epoch's backup whole on disk.
        backup.wait()
    if state.first_fit is None:
        state.first_fit = runlog


def _result(run: RunSettings, job: JobOptions, state: TrainState, clock: Clock) -> dict:
    """fit.json (see convscope.training.metrics), all but wall_s/eval_s/save."""
    from convscope.models.weights import weights_for

    history, first_fit = state.history, state.first_fit
    phase_starts = {p.start for p in state.plan}
    steady = [r for r in history if int(r["epoch"]) not in phase_starts] or history
    train_s = statistics.median(r["train_s"] for r in steady) if steady else float("nan")
    first_epoch = next((r for r in history if int(r["epoch"]) == 0), None)
    samples = state.data.train.samples_per_epoch
    return {
        "backbone": run.backbone,
        "run": state.run_id,
        "strategy": run.strategy,
        "hp": run.hp,
        "classes": list(run.classes),
        "input_size": run.input_size,
        "weights": weights_for(run.strategy, run.options).get("weights", "imagenet"),
        **state.report,
        "epochs_trained": len(history),
        "kept": state.kept,  # the epoch whose weights model.keras holds (train.keep); history.csv has them all
        "phases": [
            {
                "index": p.index,
                "depth": p.depth,
                "learning_rate": p.learning_rate,
                "epochs": [p.start, p.end],
            }
            for p in state.plan
        ],
        "resumed_from_epoch": state.resumed_from,
        "train_time_s": round(sum(r.get("epoch_s", 0.0) for r in history), 3),
        # beside the wall time: what Snakemake's benchmark (cpu_time) of the job must at least hold
        "train_cpu_s": state.train_cpu_s,
        "images_per_s": round(samples / train_s, 2) if train_s and train_s > 0 else None,
        "fixed_cost_s": {
            "imports": clock.between("start", "imported"),
            "setup": clock.between("imported", "build"),  # backup check, memory maps of the prepared arrays
            "build_and_weights": clock.between("build", "built"),
            "first_step": round(first_fit.first_step_s, 3) if first_fit and first_fit.first_step_s else None,
            "first_epoch_overhead": (
                round(first_epoch["train_s"] - train_s, 3) if first_epoch and len(history) > 1 else None
            ),
            "predict": clock.between("trained", "predicted"),
            "metrics": clock.between("predicted", "evaluated"),
        },
        "job_env": backend_lib.job_env(),
        "jobs_per_gpu": job.jobs_per_gpu,
        "seed": int(run.hp["seed"]),
        "dtype_policy": state.precision,
        "jit_compile": bool(state.model.jit_compile),
        "versions": backend_lib.versions(),
        "tensorboard": {
            "enabled": bool(run.tensorboard),
            "ok": bool(run.tensorboard) and state.tb is not None and state.tb.error is None,
            "warning": state.tb.error if state.tb is not None else None,
        },
    }


def _write_outputs(state: TrainState, out: Path, result: dict, clock: Clock) -> None:
    """model.keras and history.csv, each atomically; fills in the save time and the walls."""
    with atomic.path(out / layout.MODEL) as tmp_model:
        state.model.save(str(tmp_model))
    atomic.write_bytes(out / layout.HISTORY, layout.BackupFolder(state.work).history.read_bytes())
    clock.mark("saved")
    result["fixed_cost_s"]["save"] = clock.between("evaluated", "saved")
    result["wall_s"] = clock.between("start", "saved")
    result["eval_s"] = clock.between("trained", "saved")
