"""Expected calibration error and temperature scaling on constructed probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.analysis.trust import calibration as figure
from convscope.stats import calibration


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def over_confident(n: int, seed: int, sharpen: float = 2.5):
    """Labels drawn from softmax(z), and a model that reports softmax(sharpen * z): right ranking, too sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, 4))
    truth = softmax(z)
    labels = np.array([rng.choice(4, p=p) for p in truth])
    return softmax(sharpen * z), labels


def test_ece_by_hand():
    # Four images: two at confidence 0.9 (one right), two at 0.6 (both right). Bins of width 0.1:
    # |0.5 - 0.9| * 2/4 + |1.0 - 0.6| * 2/4 = 0.4.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    rel = calibration.reliability(probs, labels, bins=10)
    assert rel["ece"] == pytest.approx(0.4)
    assert rel["count"].sum() == 4 and rel["count"][8] == 2 and rel["count"][5] == 2
    assert rel["accuracy"][8] == pytest.approx(0.5) and rel["confidence"][5] == pytest.approx(0.6)
    # Perfectly calibrated: confidence 0.75 and three of four right.
    even = np.array([[0.75, 0.25]] * 4)
    assert calibration.expected_calibration_error(even, np.array([0, 0, 0, 1])) == pytest.approx(0.0)


def test_temperature_scaling_lowers_ece_and_keeps_every_argmax():
    val_probs, val_labels = over_confident(3000, seed=1)
    test_probs, test_labels = over_confident(3000, seed=2)
    cal = calibration.calibrate(val_probs, val_labels, test_probs, test_labels, bins=15)
    # The model is the truth sharpened by 2.5, so dividing its logits by 2.5 undoes it.
    assert cal.temperature == pytest.approx(2.5, rel=0.1)
    assert cal.before["ece"] > 0.1 and cal.after["ece"] < 0.03
    assert cal.after["ece"] < cal.before["ece"] / 4
    assert cal.nll_after < cal.nll_before
    scaled = calibration.scale(test_probs, cal.temperature)
    assert np.array_equal(scaled.argmax(axis=1), test_probs.argmax(axis=1))
    assert cal.accuracy_after == cal.accuracy_before
    assert np.allclose(scaled.sum(axis=1), 1)


def test_an_under_confident_model_gets_a_temperature_below_one():
    val_probs, val_labels = over_confident(3000, seed=3, sharpen=0.5)
    assert calibration.fit_temperature(val_probs, val_labels) == pytest.approx(0.5, rel=0.1)


def test_margins_are_not_probabilities():
    assert calibration.is_probabilities(np.array([[0.2, 0.8], [0.5, 0.5]]))
    assert not calibration.is_probabilities(np.array([[-1.2, 0.8], [0.3, 2.5]]))  # a linear SVM's scores


def test_the_written_files(tmp_path):
    probs, labels = over_confident(400, seed=4)
    cal = calibration.calibrate(probs, labels, probs, labels, bins=10)
    js, csv, png = figure.write(cal, tmp_path)
    import json

    import pandas as pd

    summary = json.loads(js.read_text())
    assert summary["temperature"] == pytest.approx(cal.temperature) and summary["bins"] == 10
    table = pd.read_csv(csv)
    assert len(table) == 20 and table.groupby("when")["images"].sum().to_dict() == {"after": 400, "before": 400}
    assert png.stat().st_size > 1000
