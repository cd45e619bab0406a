"""Calibrated probabilities: expected calibration error, reliability diagrams, temperature scaling.

A classifier's top probability should be the chance that it is right: among the
images it calls with 0.8, about 80% correct. The expected calibration error (ECE,
Guo et al. 2017, "On Calibration of Modern Neural Networks") measures the gap:
test images are put in equal-width bins by their top probability, and ECE is the
mean |accuracy - confidence| over the bins, weighted by the share of images in
each. Temperature scaling divides the logits by one number T > 0 fitted on the
validation split (minimum negative log-likelihood); dividing by a positive T
keeps every image's ranking of the classes, so the prediction and the accuracy
are unchanged by construction, only the confidence moves.

Pure NumPy/SciPy: the training stage imports it for the ECE in metrics.json, the
analysis stage for the reliability diagrams (convscope/analysis/trust/calibration.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# log(p) stands in for the logits of a softmax output (softmax(log p) = p); a
# probability of exactly 0 would give -inf, so probabilities are floored first.
_FLOOR = 1e-12
# Temperatures searched: log T in [-5, 5] (T from 0.007 to 148) covers every
# over- or under-confident network seen in practice.
_LOG_T_BOUNDS = (-5.0, 5.0)


def is_probabilities(scores) -> bool:
    """Rows in [0, 1] summing to 1: softmax outputs, not margins (a linear SVM's scores)."""
    s = np.asarray(scores, dtype=np.float64)
    return s.ndim == 2 and len(s) > 0 and s.min() >= 0 and s.max() <= 1 and np.allclose(s.sum(axis=1), 1, atol=1e-3)


def reliability(probs, labels, bins: int = 15) -> dict:
    """Per confidence bin (equal width on [0, 1]): images, mean confidence, accuracy; and the ECE."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    # Bin k holds (edges[k], edges[k+1]]; a confidence of exactly 0 joins the first bin.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, int(bins) - 1)
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=bins)
    acc_sum = np.bincount(which, weights=correct.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / count, np.nan)
        accuracy = np.where(count > 0, acc_sum / count, np.nan)
    gaps = np.where(count > 0, np.abs(accuracy - mean_conf), 0.0)
    ece = float((gaps * count).sum() / max(len(labels), 1))
    return {
        "edges": edges,
        "count": count,
        "confidence": mean_conf,
        "accuracy": accuracy,
        "ece": ece,
    }


def expected_calibration_error(probs, labels, bins: int = 15) -> float:
    return reliability(probs, labels, bins)["ece"]


def _logits(probs) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _FLOOR, 1.0))


def scale(probs, temperature: float) -> np.ndarray:
    """softmax(log(probs) / T): the probabilities at temperature T (T = 1 gives probs back)."""
    z = _logits(probs) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the true classes."""
    p = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    return float(-np.log(np.clip(p, _FLOOR, 1.0)).mean())


def fit_temperature(probs, labels) -> float:
    """The T > 0 minimising the NLL of softmax(log(probs) / T) on these (validation) images."""
    from scipy.optimize import minimize_scalar

    z = _logits(probs)
    labels = np.asarray(labels, dtype=np.int64)

    def loss(log_t):
        s = z / np.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        return float((np.log(np.exp(s).sum(axis=1)) - s[np.arange(len(labels)), labels]).mean())

    res = minimize_scalar(loss, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-5})
    if min(abs(res.x - b) for b in _LOG_T_BOUNDS) < 1e-3:
        log.warning(
            "temperature scaling: T = %.3g is at the end of the search range: the probabilities carry "
            "almost no information about the labels (a model near chance, or very few val images)",
            np.exp(res.x),
        )
    return float(np.exp(res.x))


@dataclass
class Calibration:
    temperature: float
    before: dict  # reliability() of the test probabilities as the model gives them
    after: dict  # the same at the fitted temperature
    nll_before: float
    nll_after: float
    accuracy_before: float
    accuracy_after: float
    val_images: int

    def summary(self) -> dict:
        return {
            "temperature": self.temperature,
            "fitted_on": "val",
            "val_images": self.val_images,
            "test_images": int(self.before["count"].sum()),
            "bins": len(self.before["count"]),
            "ece_before": self.before["ece"],
            "ece_after": self.after["ece"],
            "nll_before": self.nll_before,
            "nll_after": self.nll_after,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
        }


def calibrate(val_probs, val_labels, test_probs, test_labels, bins: int = 15) -> Calibration:
    """Fit T on the validation split; measure the test split before and after."""
    t = fit_temperature(val_probs, val_labels)
    scaled = scale(test_probs, t)
    labels = np.asarray(test_labels, dtype=np.int64)
    return Calibration(
        temperature=t,
        before=reliability(test_probs, labels, bins),
        after=reliability(scaled, labels, bins),
        nll_before=nll(test_probs, labels),
        nll_after=nll(scaled, labels),
        accuracy_before=float((np.asarray(test_probs).argmax(axis=1) == labels).mean()),
        accuracy_after=float((scaled.argmax(axis=1) == labels).mean()),
        val_images=len(val_labels),
    )
