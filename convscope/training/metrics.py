"""Evaluation numbers of a run, from labels and class scores (no Keras).

Every run (trained or features head) has the same metrics.json layout, so
the grid summary and the report read all runs alike. The training job writes
all of it but "test" as fit.json (val_section); the evaluate job adds "test"
(test_section) and writes metrics.json:

    {"backbone", "run", "strategy", "hp", "classes",
     "val":  {"n", "accuracy", "top_k_accuracy", "k", "macro_f1",
              "per_class": {cls: {"precision", "recall", "f1", "support"}},
              "confusion_matrix": [[...]]   # rows = true class, columns = predicted},
     "test": {... same ..., "accuracy_ci95": [low, high]},
     "bootstrap": {"samples", "seed"},
     "kept": {"monitor", "epoch", "value"}   # trained runs: the epoch (0-based, as in history.csv)
                                             # whose weights the model holds (train.keep) and its score
     "train_time_s", "images_per_s", "seed", "versions", ...}
"""

from __future__ import annotations

import numpy as np

from convscope.stats.calibration import expected_calibration_error, is_probabilities


def top_k(num_classes: int) -> int:
    """k of the top-k accuracy: 3, or fewer when there are few classes (k < classes, else it is always 1)."""
    return max(1, min(3, num_classes - 1))


def evaluate(y_true, scores, classes: list[str]) -> dict:
    """Accuracy, top-k, per-class precision/recall/F1, macro-F1, confusion matrix.

    scores: N x C, probabilities or any per-class scores whose argmax is the prediction.
    """
    y_true = np.asarray(y_true).astype(int)
    scores = np.asarray(scores, dtype="float64")
    n_classes = len(classes)
    if scores.ndim != 2 or scores.shape != (len(y_true), n_classes):
        raise ValueError(f"scores shape {scores.shape} does not match {len(y_true)} labels x {n_classes} classes")
    pred = scores.argmax(axis=1)
    k = top_k(n_classes)
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    cm = confusion_matrix(y_true, pred, n_classes)
    precision, recall, f1, support = per_class_scores(cm)
    return {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(pred == y_true)) if len(y_true) else float("nan"),
        "k": k,
        "top_k_accuracy": float(np.mean((ranked == y_true[:, None]).any(axis=1))) if len(y_true) else float("nan"),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            cls: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for cls, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
        "confusion_matrix": cm.tolist(),
        # Only probabilities have a calibration (a linear SVM's margins do not): None otherwise.
        "ece": expected_calibration_error(scores, y_true) if len(y_true) and is_probabilities(scores) else None,
    }


# NumPy, not sklearn.metrics: training and evaluation jobs then never import scikit-learn
# (0.6 s of a job's fixed cost on 2 cores); tests/test_training_metrics.py checks both agree.
def confusion_matrix(y_true, pred, n_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted (sklearn.metrics.confusion_matrix with labels 0..n-1)."""
    cells = np.asarray(y_true, dtype=int) * n_classes + np.asarray(pred, dtype=int)
    return np.bincount(cells, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_scores(cm: np.ndarray) -> tuple:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where undefined,
    as sklearn's precision_recall_fscore_support with zero_division=0)."""
    tp = np.diag(cm).astype("float64")
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        denom = predicted + support  # 2tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return precision, recall, f1, support


def bootstrap_accuracy_ci(correct, samples: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap confidence interval of accuracy (resampling test images)."""
    correct = np.asarray(correct, dtype="float64")
    if len(correct) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(correct), size=(int(samples), len(correct)))
    means = correct[idx].mean(axis=1)
    alpha = (1 - level) / 2
    return [float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))]


def val_section(val: tuple, classes, *, bootstrap: int, seed: int) -> dict:
    """The training job's part of metrics.json: "val" and "bootstrap" (how evaluate resamples test).

    val: (labels, scores).
    """
    return {"val": evaluate(*val, classes), "bootstrap": {"samples": int(bootstrap), "seed": int(seed)}}


def test_section(test: tuple, classes, *, bootstrap: dict) -> dict:
    """The evaluate job's part: the test split's scores with the accuracy's bootstrap CI.

    test: (labels, scores); bootstrap: val_section's {"samples", "seed"}.
    """
    y_test, s_test = test
    report = evaluate(y_test, s_test, classes)
    correct = np.asarray(s_test).argmax(axis=1) == np.asarray(y_test)
    report["accuracy_ci95"] = bootstrap_accuracy_ci(correct, bootstrap["samples"], bootstrap["seed"])
    return report
