"""Analyse one trained model: load it once, one batched forward pass, every analysis.

`analyse_model` is what the analyse rule calls (one job per model). The forward pass
over the test set yields both the class probabilities and the penultimate embeddings
(a two-output view of the same model), and every analysis reuses them; the
explanation analyses (convscope.analysis.explain) get the loaded model and the same
data. Seconds per analysis go to timings.json, next to the training time, so the
cost of analysing can be read against the cost of training.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import backbones as registry
from convscope import layout, records
from convscope.analysis.index import item, section, write_index
from convscope.analysis.steps import StepTimer, spread_over_classes

log = logging.getLogger(__name__)

def _options(options: dict | None) -> dict:
    """Config `analysis` section over the schema defaults (library callers may pass less)."""
    from convscope import config as cfg

    merged = cfg.merged("analysis", options)
    merged.setdefault("seed", 0)
    return merged


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
    labels = np.load(layout.prepared_in(prepared_dir, split, "labels.npy")).astype(np.int64)
    index = pd.read_csv(layout.prepared_in(prepared_dir, split, "index.csv"))
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
    """The run's metrics.json (written by the train stage), None when there is none."""
    path = Path(run_dir) / layout.METRICS
    return records.read_metrics(path) if path.is_file() else None


def _train_seconds(metrics: records.RunMetrics | None) -> float | None:
    return None if metrics is None or metrics.train_time_s is None else float(metrics.train_time_s)


def reference_base(backbone: str, metrics: records.RunMetrics, backbone_options: dict, input_size: int, num_classes: int):
    """The base as it was before training: rebuilt exactly as the train stage built it.

    build_classifier seeds the backend before creating the base, so the same
    backbone, weights option, strategy and seed give the same starting weights
    (ImageNet, a weights file, or a seeded random init), without storing them.
    """
    from convscope.models import build
    from convscope.training.strategies import weights_for

    strategy = metrics.strategy
    seed = metrics.hp["seed"] if "seed" in metrics.hp else metrics.seed
    model = build.build_classifier(
        backbone, num_classes, input_size=input_size, seed=None if seed is None else int(seed),
        **weights_for(strategy, backbone_options),
    )
    return build.base_of(model)


def starting_base(model, backbone: str, metrics: records.RunMetrics, backbone_options: dict, input_size: int, num_classes: int):
    """reference_base, or None (with the reason logged) when it cannot be the real start.

    A random init is reproducible only on the backend that drew it; and every layer
    that stayed frozen in training must equal the rebuilt one, which checks the
    rebuild itself.
    """
    import keras

    from convscope.models.build import base_of
    from convscope.training.strategies import weights_for

    random_start = weights_for(metrics.strategy, backbone_options).get("weights", "imagenet") == "none"
    trained_on = metrics.versions.get("backend")
    if random_start and trained_on and trained_on != keras.backend.backend():
        log.warning("change from the starting weights skipped: the run started from a random init drawn by "
                    "%s, which %s cannot redraw; analyse with train.backend=%s", trained_on,
                    keras.backend.backend(), trained_on)
        return None
    reference = reference_base(backbone, metrics, backbone_options, input_size, num_classes)
    base = base_of(model)
    for layer in base.layers:
        if layer.trainable or not layer.weights:
            continue
        for w, r in zip(layer.get_weights(), reference.get_layer(layer.name).get_weights()):
            if w.shape != r.shape or not np.array_equal(w, r):
                log.warning("change from the starting weights skipped: frozen layer %s of the trained model differs "
                            "from the rebuilt starting base (weights option %r)", layer.name,
                            backbone_options.get("weights", "imagenet"))
                return None
    return reference


def analyse_model(
    model_path, prepared_dir, run_dir, out_dir, classes, options=None, *, backbone=None, fresh: bool = False,
    explain: bool = True, backbone_options: dict | None = None,
) -> Path:
    """Run every analysis of one model; returns the path of out_dir/index.json.

    backbone defaults to the folder name above the run (R/models/{backbone}/{run}).
    fresh: empty out_dir first (the analyse rule owns its folder; figures of layers or
    settings no longer configured must not linger next to the new ones).
    explain=False leaves out the explanation analyses (for library use and tests of
    the standard ones on models that are not registry backbones).
    backbone_options: the config's backbones.<name> options (weights, ...): with
    them the pretrained starting point is rebuilt for the change-from-base analysis.
    """
    from convscope.analysis import activations, confusion, curves, embedding, examples, filters

    t_start = time.perf_counter()
    opts = _options(options)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    backbone = backbone or run_dir.parent.name
    if fresh and out_dir.is_dir():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = list(classes)
    timer = StepTimer()

    with timer("load model and test set"):
        model = load_model(model_path)
        base, _ = contract_layers(model)
        x, labels, index = load_split(prepared_dir)
        num_out = model.output.shape[-1]
        if num_out != len(classes):
            raise ValueError(f"{model_path}: the model predicts {num_out} classes, config has {len(classes)}: {classes}")
    with timer("forward pass"):
        probs, emb = forward(model, x, opts["batch_size"])
    preds = probs.argmax(axis=1)
    files = index["file"].astype(str).tolist() if "file" in index else None
    sample = spread_over_classes(labels, opts["sample_images"])
    pd.DataFrame(
        {"row": np.arange(len(x)), "file": files or "", "true": [classes[k] for k in labels],
         "pred": [classes[k] for k in preds], **{f"p_{c}": probs[:, k] for k, c in enumerate(classes)}}
    ).to_csv(out_dir / "predictions.csv", index=False)
    log.info("test accuracy %.3f (%d images)", float((preds == labels).mean()), len(x))

    metrics = read_metrics(run_dir)
    sections = []
    if metrics is not None and metrics.strategy == "features":
        # A features run fits a linear head on frozen embeddings: no epochs, no curves.
        log.info("features run: no training epochs, so no learning curves")
    else:
        with timer("learning curves"):
            sections.append(curves.learning_curves(run_dir / layout.HISTORY, out_dir))
    with timer("confusion"):
        sections.append(confusion.confusion(labels, probs, classes, out_dir))
        sections[-1]["items"].append(
            item("table", out_dir / "predictions.csv", "Every test image with its true class, prediction and "
                 "class probabilities.", out_dir / "predictions.csv", root=out_dir)
        )
    with timer("examples"):
        sections.append(examples.examples(x, labels, probs, classes, out_dir, files=files, **opts["examples"]))
    with timer("embedding"):
        sections.append(
            embedding.embedding_maps(emb, x, labels, classes, out_dir, seed=opts["seed"], files=files, preds=preds,
                                     layer=embedding_layer_name(model, backbone), **opts["embedding"])
        )
    with timer("filters"):
        bgr = registry.get(backbone).preprocess == "caffe" if backbone in registry.BACKBONES else False
        sections.append(filters.first_layer_filters(base, out_dir, bgr=bgr, **opts["filters"]))
    with timer("activations"):
        sections.append(
            activations.activation_grids(model, base, x, sample, classes, labels, out_dir,
                                         batch_size=opts["batch_size"], **opts["activations"])
        )

    data = {"x": x, "labels": labels, "classes": classes, "probs": probs, "preds": preds, "embeddings": emb,
            "index": index, "sample": sample, "size": int(x.shape[1]), "seed": opts["seed"]}
    if explain:
        if backbone_options is not None and (opts.get("change") or {}).get("enabled", True) and metrics:
            with timer("rebuild the starting base"):
                data["base_reference"] = starting_base(model, backbone, metrics, backbone_options, int(x.shape[1]),
                                                       len(classes))
        from convscope.analysis.explain import explain_model

        with timer("explanations"):
            sections += explain_model(model, backbone, data, out_dir, opts)

    total = round(time.perf_counter() - t_start, 3)
    train = _train_seconds(metrics)
    cost = {"analysis_seconds": total, "steps": timer.seconds, "train_seconds": train,
            "analysis_over_train": round(total / train, 3) if train else None, "test_images": len(x)}
    (out_dir / "timings.json").write_text(json.dumps(cost, indent=1))
    sections.append(
        section("cost", "Cost of these analyses", [
            item("json", out_dir / "timings.json", "Seconds spent on each analysis of this model (one job, model "
                 "loaded once) and the ratio to its training time.", None, root=out_dir)
        ])
    )
    log.info("analyses of %s took %.1f s (training %s s)", run_dir, total, train)
    return write_index(out_dir, f"{backbone} / {run_dir.name}", sections)
