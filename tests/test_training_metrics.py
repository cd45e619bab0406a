"""The run metrics' NumPy confusion matrix and per-class scores equal scikit-learn's.

convscope.training.metrics computes them in NumPy so that training and evaluation
jobs never import scikit-learn; this holds them to sklearn.metrics, including
classes that are never predicted or never present (zero_division=0).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from convscope.training import metrics


@pytest.mark.parametrize("seed", range(5))
def test_scores_equal_sklearn_including_empty_classes(seed):
    rng = np.random.default_rng(seed)
    n_classes = 5
    # Class 4 is never a true label, class 3 never predicted: both undefined cases occur.
    y = rng.integers(0, 4, 60)
    scores = rng.random((60, n_classes))
    scores[:, 3] = -1.0
    pred = scores.argmax(1)
    report = metrics.evaluate(y, scores, [f"c{i}" for i in range(n_classes)])

    labels = list(range(n_classes))
    assert report["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
    want = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    got = [[report["per_class"][f"c{i}"][k] for i in labels] for k in ("precision", "recall", "f1", "support")]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)
    assert report["macro_f1"] == pytest.approx(float(np.mean(want[2])), abs=1e-12)
