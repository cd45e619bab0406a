"""The features strategy: frozen-base embeddings once, then cheap scikit-learn heads.

compute_embeddings (one job per backbone and split) runs the frozen classifier up to
its embedding layer (convscope.backbones.embedding_layer: "pool", or fc7 / fc2 when
the pretrained fc stack is kept) over a split and saves R/features/{backbone}/{split}.npy
(float32 N x D). fit_head (one job per classifier and C) reads the train and val
arrays and the prepared labels and writes fit.json; the evaluate job scores the
test split (convscope.training.evaluate). Neither imports Keras or a backend, so K
heads cost K small scikit-learn fits, not K passes through the network, and an edit
of the test split refits none of them.

A head is linear in the standardized embeddings, so head.npz stores it
folded into one Dense layer: scores = embeddings @ W + b. head_model() puts it
on the frozen base as the classifier's "head" when a Keras model of a
features run is wanted (rule features_model, on demand).
"""

from __future__ import annotations

import io
import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convscope import atomic, layout, records
from convscope.layout import SPLITS
from convscope.training import metrics

log = logging.getLogger(__name__)

CLASSIFIERS = ("logreg", "linsvm")


def _save_npy_atomic(path, array) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    atomic.write_bytes(path, buf.getvalue())


def _frozen_classifier(features: FeatureSettings, num_classes: int):
    """The features strategy's network: the base at its starting weights, no dropout or augmentation.

    The embed job reads its embedding layer; head_model puts the fitted linear head on it.
    """
    from convscope.models import build
    from convscope.models.weights import weights_for

    return build.build_classifier(
        features.backbone,
        num_classes,
        input_size=features.input_size,
        dropout=0.0,
        augment="none",
        seed=int(features.seed),
        **weights_for("features", features.options),
    )


@dataclass(frozen=True)
class FeatureSettings:
    """What changes a backbone's embeddings (convscope.grid.features_params, the embed rule's params)."""

    backbone: str
    options: dict  # config backbones.<name>
    input_size: int
    backend: str  # train.backend
    seed: int
    batch_size: int  # of the embedding pass: train.features.batch_size


def _embed_splits(embedder, where, features: FeatureSettings, num_classes: int, threads: int, splits):
    """Write the embeddings of `splits`; returns (per-split info, images embedded, seconds of predict).

    where: convscope.training.run.Where (the prepared arrays, the features folder).
    """
    from convscope.training import data

    done, images, predict_s = {}, 0, 0.0
    for split in splits:
        ds = data.MemmapDataset(
            *data.split_paths(where.prepared, split),
            features.batch_size,
            num_classes,
            data.Reading(for_predict=True, workers=threads),
        )
        if ds.image_shape[:2] != (features.input_size, features.input_size):
            raise ValueError(
                f"{ds.images_path}: images are {ds.image_shape[:2]}, {features.backbone} needs {features.input_size}"
            )
        t = time.perf_counter()
        emb = np.asarray(data.predict(embedder, ds), dtype="float32")
        seconds = time.perf_counter() - t
        predict_s += seconds
        done[split] = {"n": int(len(emb)), "dim": int(emb.shape[1]), "seconds": round(seconds, 3)}
        images += len(emb)
        _save_npy_atomic(layout.embedding_in(where.out, split), emb)
        log.info("%s %s: %d embeddings of dimension %d", features.backbone, split, len(emb), emb.shape[1])
    return done, images, predict_s


def compute_embeddings(
    *, prepared_dir, out_dir, features: FeatureSettings, num_classes: int, threads: int = 1, splits: tuple = SPLITS
) -> dict:
    """Write {split}.npy embeddings and {split}.embed.json (timings) of each of `splits` into out_dir.

    num_classes: of the classifier the embedding layer is read from (its head is never used).
    Returns the info of all of them ("splits": per-split counts and seconds).
    """
    t0 = time.perf_counter()
    from convscope import backend as backend_lib

    backend_lib.select(features.backend, threads=threads)
    import keras  # noqa: F401 - imported here, so fixed_cost_s.imports measures it

    from convscope.models import build
    from convscope.models.weights import weights_for
    from convscope.training.run import Where

    t_imported = time.perf_counter()
    precision = build.configure_precision()
    model = _frozen_classifier(features, num_classes)
    embedder = build.embedder(model, features.backbone)  # the layer the analyses call penultimate, too
    t_built = time.perf_counter()
    out = Path(out_dir)
    where = Where(Path(prepared_dir), out)
    done, images, predict_s = _embed_splits(embedder, where, features, num_classes, threads, splits)
    info = {"backbone": features.backbone, "input_size": features.input_size, "splits": done}
    info.update(
        {
            "weights": weights_for("features", features.options).get("weights", "imagenet"),
            "dtype_policy": precision,
            "seconds": round(time.perf_counter() - t0, 3),
            "fixed_cost_s": {"imports": round(t_imported - t0, 3), "build_and_weights": round(t_built - t_imported, 3)},
            "images_per_s": round(images / max(predict_s, 1e-9), 2),
            "versions": backend_lib.versions(),
        }
    )
    for split in splits:
        atomic.write_json(layout.embed_info_in(out, split), {**info, "splits": {split: done[split]}})
    return info


def _classifier(name: str, C: float, seed: int, max_iter: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if name == "logreg":
        return LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    if name == "linsvm":
        return LinearSVC(C=C, max_iter=max_iter, random_state=seed)
    raise ValueError(f"config key train.features.classifiers: {name!r} unknown; allowed: {list(CLASSIFIERS)}")


def _linear_head(clf, mean, scale, num_classes: int):
    """(W, b) with scores = x @ W + b equal to the classifier's on standardized x.

    logreg: softmax(scores) is predict_proba; linsvm: scores are decision_function.
    Two classes: sklearn keeps one column z; [0, z] gives the same softmax/argmax.
    """
    coef = np.asarray(clf.coef_, dtype="float64")
    intercept = np.asarray(clf.intercept_, dtype="float64").reshape(-1)
    if num_classes == 2 and coef.shape[0] == 1:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    W = coef.T / scale[:, None]
    b = intercept - (mean / scale) @ coef.T
    return W.astype("float32"), b.astype("float32")


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class HeadSettings:
    """What changes one features head (convscope.grid.head_params, the features_head rule's params)."""

    backbone: str
    hp: dict  # classifier, C, seed
    classes: list
    max_iter: int  # train.features.max_iter
    bootstrap: int  # train.bootstrap: resamples of the test accuracy's CI


def load_arrays(feats: Path, labels: Path, splits=layout.FIT_SPLITS) -> tuple[dict, dict]:
    """Embeddings and labels of `splits`, checked to belong together."""
    X = {s: np.load(layout.embedding_in(feats, s)) for s in splits}
    y = {s: np.load(layout.prepared_in(labels, s, layout.PREPARED_LABELS)).astype(int) for s in splits}
    for s in splits:
        if len(X[s]) != len(y[s]):
            raise ValueError(
                f"{layout.embedding_in(feats, s)} has {len(X[s])} rows but "
                f"{layout.prepared_in(labels, s, layout.PREPARED_LABELS)} has {len(y[s])}: "
                "the embeddings are stale; re-run the embed rule"
            )
    if "train" in y and len(np.unique(y["train"])) < 2:
        raise ValueError(
            f"{layout.prepared_in(labels, 'train', layout.PREPARED_LABELS)}: the training split holds fewer than two classes"
        )
    return X, y


def _fit_linear(X: dict, y: dict, head: HeadSettings):
    """Fit the classifier on standardized train embeddings; returns (W, b, classifier, fit seconds)."""
    from sklearn.preprocessing import StandardScaler

    hp = head.hp
    scaler = StandardScaler().fit(X["train"])
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    clf = _classifier(hp["classifier"], float(hp["C"]), int(hp["seed"]), int(head.max_iter))
    t_fit = time.perf_counter()
    clf.fit((X["train"] - scaler.mean_) / scale, y["train"])
    fit_s = time.perf_counter() - t_fit
    present = np.asarray(clf.classes_, dtype=int)
    W_seen, b_seen = _linear_head(clf, scaler.mean_, scale, len(present))
    # Classes absent from the training split get a score no input can reach.
    num_classes = len(head.classes)
    W = np.zeros((X["train"].shape[1], num_classes), dtype="float32")
    b = np.full((num_classes,), -1e9, dtype="float32")
    W[:, present], b[present] = W_seen, b_seen
    return W, b, clf, fit_s


def _write_head(out: Path, W, b, classifier: str) -> None:
    buf = io.BytesIO()
    np.savez(buf, W=W, b=b, classifier=np.array(classifier), softmax=np.array(classifier == "logreg"))
    atomic.write_bytes(out / layout.HEAD, buf.getvalue())


def _head_result(head: HeadSettings, out: Path, report: dict, fit: tuple, feats: Path, X: dict) -> dict:
    """fit.json of a features run (see convscope.training.metrics), all but wall_s."""
    import sklearn

    clf, fit_s = fit
    embed_info = {}
    if layout.embed_info_in(feats, "train").exists():
        embed_info = json.loads(layout.embed_info_in(feats, "train").read_text())
    return {
        "backbone": head.backbone,
        "run": out.name,
        "strategy": "features",
        "hp": head.hp,
        "classes": list(head.classes),
        "input_size": embed_info.get("input_size"),
        "weights": embed_info.get("weights"),
        **report,
        "epochs_trained": None,
        "train_time_s": round(fit_s, 4),
        "images_per_s": round(len(X["train"]) / max(fit_s, 1e-9), 1),
        "embedding": {
            "dim": int(X["train"].shape[1]),
            "seconds": embed_info.get("seconds"),
            "images_per_s": embed_info.get("images_per_s"),
            "file": str(feats),
        },
        "converged": bool(np.max(np.atleast_1d(clf.n_iter_)) < head.max_iter),
        "seed": int(head.hp["seed"]),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__},
    }


def head_scores(head_npz, X):
    """The fitted head's class scores of embeddings X: probabilities for logreg, margins for linsvm."""
    head = np.load(head_npz)
    scores = np.asarray(X, dtype="float64") @ head["W"] + head["b"]
    return _softmax(scores) if bool(head["softmax"]) else scores


def fit_head(*, features_dir, prepared_dir, out_dir, head: HeadSettings) -> dict:
    """Fit one scikit-learn head on the train embeddings, score val; write head.npz and fit.json."""
    t0 = time.perf_counter()
    feats, labels = Path(features_dir), Path(prepared_dir)
    X, y = load_arrays(feats, labels)
    hp = head.hp
    W, b, clf, fit_s = _fit_linear(X, y, head)
    out = Path(out_dir)
    _write_head(out, W, b, hp["classifier"])
    report = metrics.val_section(
        (y["val"], head_scores(out / layout.HEAD, X["val"])),
        list(head.classes),
        bootstrap=head.bootstrap,
        seed=int(hp["seed"]),
    )
    result = _head_result(head, out, report, (clf, fit_s), feats, X)
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    records.write_fit(out / layout.FIT, result, f"features run {head.backbone}/{out.name}")
    log.info(
        "%s/%s: val accuracy %.3f (fit %.2f s on %d x %d embeddings; the evaluate job scores the test split)",
        head.backbone,
        out.name,
        report["val"]["accuracy"],
        fit_s,
        *X["train"].shape,
    )
    return result


def head_model(*, head_path, out_path, features: FeatureSettings, num_classes: int):
    """The Keras classifier of a features run: frozen base + the fitted linear head (model.keras).

    For logreg the model's softmax output equals predict_proba of the head on
    the embeddings; for linsvm its argmax equals the SVM's prediction.
    """
    from convscope import backend as backend_lib

    backend_lib.select(features.backend)
    from convscope.models import build

    head = np.load(head_path)
    model = _frozen_classifier(features, num_classes)
    model.get_layer("head").set_weights([head["W"], head["b"]])
    build.set_tune_depth(model, features.backbone, 0)
    out = Path(out_path)
    with atomic.path(out) as tmp:
        model.save(str(tmp))
    return model
