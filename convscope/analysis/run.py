"""Analyse one trained model: load it once, one batched forward pass, every analysis.

`analyse_model` is what the analyse rule calls (one job per model). The forward pass
over the test set yields both the class probabilities and the penultimate embeddings
(a two-output view of the same model), and every analysis reuses them; the
explanation analyses (convscope.analysis.explain.run) get the loaded model and the same
data. Seconds per analysis go to timings.json, next to the training time, so the
cost of analysing can be read against the cost of training.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import backbones as registry
from convscope import layout, records
from convscope.analysis import options as analysis_options
from convscope.analysis.index import item, section, write_index
from convscope.analysis.steps import Labelled, StepTimer, spread_over_classes

log = logging.getLogger(__name__)


def load_model(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained model; run the train rule for this run first")
    from convscope.models.build import load_model as load  # registers the project's custom layers

    return load(path, compile=False)


def contract_layers(model):
    """The classifier's nested base and preprocess layer (MODEL CONTRACT names)."""
    names = {layer.name for layer in model.layers}
    missing = [n for n in ("preprocess", "base", "head") if n not in names]
    if missing:
        raise ValueError(
            f"model {model.name!r} lacks layer(s) {missing} required by the model contract "
            f"(image -> augment -> preprocess -> base -> pool -> dropout -> head); it has {sorted(names)}"
        )
    from convscope.models.build import base_of

    return base_of(model), model.get_layer("preprocess")


def load_split(prepared_dir, split: str = "test") -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    prepared_dir = Path(prepared_dir)
    x = np.load(layout.prepared_in(prepared_dir, split))
    labels = np.load(layout.prepared_in(prepared_dir, split, layout.PREPARED_LABELS)).astype(np.int64)
    index = pd.read_csv(layout.prepared_in(prepared_dir, split, layout.PREPARED_INDEX))
    if not (len(x) == len(labels) == len(index)):
        raise ValueError(
            f"{prepared_dir}: {split}.npy ({len(x)}), {split}.labels.npy ({len(labels)}) and "
            f"{split}.index.csv ({len(index)}) disagree; re-run the prepare rule"
        )
    if len(x) == 0:
        raise ValueError(f"{prepared_dir}: the {split} split is empty; add images or change config key split")
    return x, labels, index


def embedding_layer_name(model, backbone: str) -> str:
    """The layer `forward` takes embeddings from, for titles (build.embedding_layer; models of other shapes: "penultimate")."""
    from convscope import backbones as registry
    from convscope.models.build import embedding_layer

    return embedding_layer(model, backbone) if backbone in registry.BACKBONES else "penultimate"


def forward(model, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and penultimate embeddings (build.embedding_tensor, what "head" reads) in one pass."""
    import keras

    from convscope.models.build import embedding_tensor

    both = keras.Model(model.inputs, [embedding_tensor(model), model.output])
    # uint8 in: the model casts each batch to its float input, no float copy of the whole set.
    emb, probs = both.predict(x, batch_size=batch_size, verbose=0)
    return np.asarray(probs, dtype=np.float32), np.asarray(emb, dtype=np.float32).reshape(len(x), -1)


def read_metrics(run_dir) -> records.RunMetrics | None:
    """The run's metrics.json (written by its evaluate job), None when there is none."""
    path = Path(run_dir) / layout.METRICS
    return records.read_metrics(path) if path.is_file() else None


def _train_seconds(metrics: records.RunMetrics | None) -> float | None:
    return None if metrics is None or metrics.train_time_s is None else float(metrics.train_time_s)


def reference_base(
    backbone: str, metrics: records.RunMetrics, backbone_options: dict, input_size: int, num_classes: int
):
    """The base as it was before training: rebuilt exactly as the train stage built it.

    build_classifier seeds the backend before creating the base, so the same
    backbone, weights option, strategy and seed give the same starting weights
    (ImageNet, a weights file, or a seeded random init), without storing them.
    """
    from convscope.models import build
    from convscope.models.weights import weights_for

    strategy = metrics.strategy
    seed = metrics.hp["seed"] if "seed" in metrics.hp else metrics.seed
    model = build.build_classifier(
        backbone,
        num_classes,
        input_size=input_size,
        seed=None if seed is None else int(seed),
        **weights_for(strategy, backbone_options),
    )
    return build.base_of(model)


def starting_base(
    model, backbone: str, metrics: records.RunMetrics, backbone_options: dict, input_size: int, num_classes: int
):
    """reference_base, or None (with the reason logged) when it cannot be the real start.

    A random init is reproducible only on the backend that drew it; and every layer
    that stayed frozen in training must equal the rebuilt one, which checks the
    rebuild itself.
    """
    import keras

    from convscope.models.build import base_of
    from convscope.models.weights import weights_for

    random_start = weights_for(metrics.strategy, backbone_options).get("weights", "imagenet") == "none"
    trained_on = metrics.versions.get("backend")
    if random_start and trained_on and trained_on != keras.backend.backend():
        log.warning(
            "change from the starting weights skipped: the run started from a random init drawn by "
            "%s, which %s cannot redraw; analyse with train.backend=%s",
            trained_on,
            keras.backend.backend(),
            trained_on,
        )
        return None
    reference = reference_base(backbone, metrics, backbone_options, input_size, num_classes)
    base = base_of(model)
    for layer in base.layers:
        if layer.trainable or not layer.weights:
            continue
        for w, r in zip(layer.get_weights(), reference.get_layer(layer.name).get_weights()):
            if w.shape != r.shape or not np.array_equal(w, r):
                log.warning(
                    "change from the starting weights skipped: frozen layer %s of the trained model differs "
                    "from the rebuilt starting base (weights option %r)",
                    layer.name,
                    backbone_options.get("weights", "imagenet"),
                )
                return None
    return reference


@dataclass
class TestSet:
    """One prepared split with the model's outputs on it: what an analysis job works on."""

    split: str
    x: np.ndarray  # N x H x W x 3 uint8
    labels: np.ndarray
    index: pd.DataFrame  # the prepared {split}.index.csv (file, box_* columns, ...)
    probs: np.ndarray | None  # N x classes; None: no forward pass (a probe job, JobSettings.forward)
    embeddings: np.ndarray | None = None  # N x D, the input of "head"

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def files(self) -> list[str] | None:
        return self.index["file"].astype(str).tolist() if "file" in self.index else None

    @property
    def size(self) -> int:
        return int(self.x.shape[1])

    def labelled(self, classes: list[str]) -> Labelled:
        return Labelled(self.x, self.labels, classes, self.files)

    @classmethod
    def predict(cls, model, prepared_dir, split: str, batch_size: int, embeddings: bool = True) -> TestSet:
        x, labels, index = load_split(prepared_dir, split)
        if embeddings:
            probs, emb = forward(model, x, batch_size)
        else:
            probs, emb = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32), None
        return cls(split, x, labels, index, probs, emb)


@dataclass
class Job:
    """One analysis job: the loaded model, its run, its test set and where the files go."""

    model: object
    base: object
    backbone: str
    classes: list[str]
    run_dir: Path
    out_dir: Path
    prepared_dir: Path
    opts: dict
    metrics: records.RunMetrics | None  # None: no metrics.json beside the model (library use)
    test: TestSet
    sample: np.ndarray  # test rows shown in per-image figures
    timer: StepTimer
    backbone_options: dict | None = None
    blocks: list[dict] = field(default_factory=list)  # convscope.analysis.standard.frozen.blocks
    reference: dict = field(default_factory=dict)  # {"base": starting base or None}, once rebuilt (job_reference)

    @property
    def record(self) -> dict:
        """metrics.json as a dict ({} without one)."""
        return self.metrics.to_json() if self.metrics is not None else {}


@dataclass(frozen=True)
class JobPaths:
    """What an analysis job reads and where it writes."""

    model: Path  # the trained model file
    prepared: Path  # the prepared folder holding test.npy (and val.npy for calibration)
    run: Path  # the run's folder (metrics.json, history.csv): R/models/{backbone}/{run}
    out: Path  # the analysis folder (index.json and every figure)

    def __post_init__(self):
        for name in ("model", "prepared", "run", "out"):
            object.__setattr__(self, name, Path(getattr(self, name)))


@dataclass(frozen=True)
class JobSettings:
    """How an analysis job runs (see analyse_model)."""

    backbone: str | None = None  # default: the folder name above the run
    fresh: bool = False  # empty the out folder first
    explain: bool = True  # False: only the standard analyses
    backbone_options: dict | None = None  # config backbones.<name>: rebuilds the starting base
    forward: bool = True  # False: no forward pass over the test set, no probabilities (convscope.analysis.probe)


def _write_predictions(test: TestSet, classes: list[str], out_dir: Path) -> None:
    pd.DataFrame(
        {
            "row": np.arange(len(test.x)),
            "file": test.files or "",
            "true": [classes[k] for k in test.labels],
            "pred": [classes[k] for k in test.preds],
            **{f"p_{c}": test.probs[:, k] for k, c in enumerate(classes)},
        }
    ).to_csv(layout.AnalysisFolder(out_dir).probabilities, index=False)
    log.info("test accuracy %.3f (%d images)", float((test.preds == test.labels).mean()), len(test.x))


def _load_checked(model_path, classes: list[str]):
    """The model and its base, after checking it predicts as many classes as the config names."""
    model = load_model(model_path)
    base, _ = contract_layers(model)
    num_out = model.output.shape[-1]
    if num_out != len(classes):
        raise ValueError(f"{model_path}: the model predicts {num_out} classes, config has {len(classes)}: {classes}")
    return model, base


def open_job(paths: JobPaths, classes, options, settings: JobSettings = JobSettings()) -> Job:
    """Load the model and the test set once, run the forward pass, write the test probabilities."""
    from convscope.analysis.standard import frozen

    opts = analysis_options.resolve(options)
    out_dir = paths.out
    if settings.fresh and out_dir.is_dir():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = list(classes)
    timer = StepTimer()
    with timer("load model"):
        model, base = _load_checked(paths.model, classes)
    if settings.forward:
        with timer("forward pass on the test set"):
            test = TestSet.predict(model, paths.prepared, "test", opts["batch_size"])
        _write_predictions(test, classes, out_dir)
    else:
        test = TestSet("test", *load_split(paths.prepared, "test"), probs=None)
    backbone = settings.backbone or paths.run.parent.name
    return Job(
        model,
        base,
        backbone,
        classes,
        paths.run,
        out_dir,
        paths.prepared,
        opts,
        read_metrics(paths.run),
        test,
        spread_over_classes(test.labels, opts["sample_images"]),
        timer,
        settings.backbone_options,
        frozen.blocks(base, backbone),
    )


# ---- the standard analyses: one step each (name, function of the job -> section or None) ----------


def _frozen(job: Job):
    from convscope.analysis.standard import frozen

    return frozen.frozen_section(job.blocks, job.record, job.out_dir)


def _curves(job: Job):
    from convscope.analysis.standard import curves

    if job.metrics is not None and job.metrics.strategy == "features":
        # A features run fits a linear head on frozen embeddings: no epochs, no curves.
        log.info("features run: no training epochs, so no learning curves")
        return None
    return curves.learning_curves(job.run_dir / layout.HISTORY, job.out_dir)


def _confusion(job: Job):
    from convscope.analysis.standard import confusion

    sec = confusion.confusion(job.test.labels, job.test.probs, job.classes, job.out_dir)
    table = layout.AnalysisFolder(job.out_dir).probabilities
    sec["items"].append(
        item(
            "table",
            table,
            "Every test image with its true class, prediction and class probabilities.",
            table,
            root=job.out_dir,
        )
    )
    return sec


def _calibration(job: Job):
    from convscope.analysis.trust import calibration
    from convscope.stats.calibration import calibrate

    opts = job.opts["calibration"]
    if not opts["enabled"]:
        return None
    if not layout.prepared_in(job.prepared_dir, "val").is_file():
        log.warning("calibration skipped: %s has no val split to fit the temperature on", job.prepared_dir)
        return None
    val = TestSet.predict(job.model, job.prepared_dir, "val", job.opts["batch_size"], embeddings=False)
    cal = calibrate(val.probs, val.labels, job.test.probs, job.test.labels, bins=int(opts["bins"]))
    js, csv, png = calibration.write(cal, job.out_dir)
    log.info("calibration: ECE %.3f -> %.3f at temperature %.3f", cal.before["ece"], cal.after["ece"], cal.temperature)
    leaning = "> 1: the network was over-confident" if cal.temperature > 1 else "<= 1: it was not over-confident"
    worse = (
        f" Here temperature scaling made calibration worse (ECE {cal.before['ece']:.3f} → {cal.after['ece']:.3f}): "
        "the temperature fitted on the validation split does not carry over to the test split; keep the "
        "probabilities as trained."
        if cal.after["ece"] > cal.before["ece"]
        else ""
    )
    return section(
        "calibration",
        "Calibrated probabilities",
        [
            item(
                "image",
                png,
                f"Reliability diagrams of the {len(job.test.x)} test images: each bar is the accuracy of "
                "the images whose top probability falls in that bin; on the diagonal, a probability of 0.8 means right "
                f"80% of the time. Left as trained (ECE {cal.before['ece']:.3f}), right after dividing the logits by "
                f"T = {cal.temperature:.2f} fitted on the {cal.val_images} validation images (ECE "
                f"{cal.after['ece']:.3f}); T {leaning}. Predictions, and so accuracy, do not change.{worse}",
                csv,
                root=job.out_dir,
            ),
            item(
                "json",
                js,
                "Temperature, expected calibration error and negative log-likelihood before and after.",
                js,
                root=job.out_dir,
            ),
        ],
    )


def _examples(job: Job):
    from convscope.analysis.standard import examples

    t = job.test
    return examples.examples(
        t.labelled(job.classes), t.probs, job.out_dir, examples.ExampleOptions(**job.opts["examples"])
    )


def _embedding(job: Job):
    from convscope.analysis.standard import embedding

    t = job.test
    options = embedding.EmbeddingOptions(
        **job.opts["embedding"], seed=job.opts["seed"], layer=embedding_layer_name(job.model, job.backbone)
    )
    return embedding.embedding_maps(t.embeddings, t.labelled(job.classes), job.out_dir, preds=t.preds, options=options)


def _filters(job: Job):
    from convscope.analysis.standard import filters, frozen

    bgr = registry.get(job.backbone).preprocess == "caffe" if job.backbone in registry.BACKBONES else False
    first = filters.first_conv(job.base)
    frozen_at = frozen.start_of(job.record) if first.name in frozen.frozen_layer_names(job.blocks) else None
    return filters.first_layer_filters(job.base, job.out_dir, bgr=bgr, frozen_at=frozen_at, **job.opts["filters"])


def _activations(job: Job):
    from convscope.analysis.standard import activations

    options = activations.ActivationOptions(
        **job.opts["activations"], batch_size=job.opts["batch_size"], min_side=int(job.opts["min_map_side"])
    )
    labelled = job.test.labelled(job.classes)
    return activations.activation_grids(job.model, job.base, labelled, job.sample, job.out_dir, options)


def job_start(job: Job):
    """A change.Start naming the weights the run started from (generic without metrics or options)."""
    from convscope.analysis.standard.change import start_of
    from convscope.models.weights import weights_for

    if job.metrics is None or job.backbone_options is None:
        return start_of(None, None)
    return start_of(job.metrics.strategy, weights_for(job.metrics.strategy, job.backbone_options).get("weights"))


def job_reference(job: Job):
    """The starting base (starting_base), rebuilt once per job and shared by CKA and the change section.

    None without the run's metrics or backbone options, or when it cannot be the real start.
    """
    if "base" not in job.reference:
        base = None
        if job.backbone_options is not None and job.metrics is not None:
            with job.timer("rebuild the starting base"):
                base = starting_base(
                    job.model, job.backbone, job.metrics, job.backbone_options, job.test.size, len(job.classes)
                )
        job.reference["base"] = base
    return job.reference["base"]


def _cka(job: Job):
    from convscope.analysis.standard import cka

    opts = job.opts["cka"]
    if not opts["enabled"] or not job.blocks:
        return None
    if len(job.test.x) < cka.MIN_IMAGES:
        log.warning("CKA skipped: %d test images, the unbiased estimator needs %d", len(job.test.x), cka.MIN_IMAGES)
        return None
    reference = job_reference(job)
    if reference is None:
        log.info("CKA skipped: the starting base of this run could not be rebuilt (see above)")
        return None
    names = [b["block"] for b in job.blocks]
    values = cka.per_block(job.model, reference, names, job.test.x, int(opts["batch_size"]))
    rows = [{"block": b["block"], "trained": b["trained"], "cka": round(v, 4)} for b, v in zip(job.blocks, values)]
    limits = cka.Thresholds(float(opts["kept"]), float(opts["unrelated"]))
    return cka.cka_section(rows, job.out_dir, job_start(job), limits, len(job.test.x))


def _corruptions(job: Job):
    from convscope.analysis.trust import corruptions

    opts = job.opts["corruptions"]
    if not opts["enabled"]:
        return None

    def predict(x):
        return job.model.predict(x, batch_size=job.opts["batch_size"], verbose=0)

    rows = corruptions.accuracy_table(
        predict, job.test.x, job.test.labels, opts["names"], sorted(opts["severities"]), job.opts["seed"]
    )
    strategy = job.metrics.strategy if job.metrics is not None else job.run_dir.name
    return corruptions.robustness_section(rows, job.out_dir, strategy, len(job.test.x))


# What a probe job runs (convscope.analysis.probe; layout.PROBED names their records).
PROBE_STEPS = (("representation change (CKA)", _cka), ("corruptions", _corruptions))

# In page order. A new analysis is one function of the Job and one entry here.
STEPS = (
    ("what this run trained", _frozen),
    ("representation change (CKA)", _cka),
    ("learning curves", _curves),
    ("confusion", _confusion),
    ("calibration", _calibration),
    ("corruptions", _corruptions),
    ("examples", _examples),
    ("embedding", _embedding),
    ("filters", _filters),
    ("activations", _activations),
)


def standard_sections(job: Job) -> list[dict]:
    sections = []
    for name, step in STEPS:
        with job.timer(name):
            sec = step(job)
        if sec is not None:
            sections.append(sec)
    return sections


def explain_sections(job: Job) -> list[dict]:
    """The explanation analyses (convscope.analysis.explain.run) on the same loaded model and test set."""
    from convscope.analysis.explain.run import explain_resolved

    t = job.test
    data = {
        "x": t.x,
        "labels": t.labels,
        "classes": job.classes,
        "probs": t.probs,
        "preds": t.preds,
        "embeddings": t.embeddings,
        "index": t.index,
        "sample": job.sample,
        "size": t.size,
        "seed": job.opts["seed"],
        "start": job_start(job),
    }
    if job.backbone_options is not None and job.opts["change"]["enabled"] and job.metrics is not None:
        with job.timer("rebuild the starting base"):
            data["base_reference"] = job_reference(job)
    with job.timer("explanations"):
        return explain_resolved(job.model, job.backbone, data, job.out_dir, job.opts)


def cost_section(job: Job, seconds: float) -> dict:
    train = _train_seconds(job.metrics)
    cost = {
        "analysis_seconds": round(seconds, 3),
        "steps": job.timer.seconds,
        "train_seconds": train,
        "analysis_over_train": round(seconds / train, 3) if train else None,
        "test_images": len(job.test.x),
    }
    timings = layout.AnalysisFolder(job.out_dir).timings
    timings.write_text(json.dumps(cost, indent=1))
    log.info("analyses of %s took %.1f s (training %s s)", job.run_dir, seconds, train)
    return section(
        "cost",
        "Cost of these analyses",
        [
            item(
                "json",
                timings,
                "Seconds spent on each analysis of this model (one job, model "
                "loaded once) and the ratio to its training time.",
                None,
                root=job.out_dir,
            )
        ],
    )


def analyse_model(paths: JobPaths, classes, options=None, settings: JobSettings = JobSettings()) -> Path:
    """Run every analysis of one model; returns the path of paths.out/index.json.

    settings.backbone defaults to the folder name above the run (R/models/{backbone}/{run}).
    settings.fresh: empty the out folder first (the analyse rule owns its folder; figures of
    layers or settings no longer configured must not linger next to the new ones).
    settings.explain=False leaves out the explanation analyses (for library use and tests of
    the standard ones on models that are not registry backbones).
    settings.backbone_options: the config's backbones.<name> options (weights, ...): with
    them the pretrained starting point is rebuilt for the change-from-base analysis.
    """
    t_start = time.perf_counter()
    job = open_job(paths, classes, options, settings)
    sections = standard_sections(job)
    if settings.explain:
        sections += explain_sections(job)
    sections.append(cost_section(job, time.perf_counter() - t_start))
    mark_not_run(job.out_dir)
    return write_index(job.out_dir, f"{job.backbone} / {job.run_dir.name}", sections)


def mark_not_run(out_dir, names=None) -> None:
    """A "not run" record for each record of layout.AnalysisFolder.records (or of `names`) this job did
    not write (its analysis off in config `analysis`, or nothing to work on), so every declared output exists."""
    for name, path in layout.AnalysisFolder(out_dir).records.items():
        if names is not None and name not in names:
            continue
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            records.ANALYSIS_RECORDS[name].not_run(
                path, "not run: off in config analysis, or not applicable to this run (see the analyse job's log)"
            )
