"""Linear CKA (convscope.analysis.standard.cka): the math, the minibatch estimate, per block in a real network."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from convscope.analysis.standard import cka


def _digits():
    return load_digits().data / 16.0  # 1,797 real 8x8 scans, shipped with scikit-learn


def test_cka_of_a_representation_with_itself_is_one():
    x = _digits()
    assert cka.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    acc = cka.MinibatchCKA()
    for idx in cka.minibatches(len(x), 64):
        acc.add(x[idx], x[idx])
    assert acc.value == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transform_and_isotropic_scaling():
    x = _digits()
    rng = np.random.default_rng(0)
    y = np.maximum(x @ rng.normal(size=(64, 40)), 0)
    q, _ = np.linalg.qr(rng.normal(size=(40, 40)))
    base = cka.linear_cka(x, y)
    assert 0.3 < base < 0.99  # a real, non-trivial similarity
    assert cka.linear_cka(x, 7.5 * y @ q) == pytest.approx(base, abs=1e-10)
    assert cka.linear_cka(0.01 * x, y) == pytest.approx(base, abs=1e-10)
    # Not invariant to any linear map: a non-isotropic scaling changes it.
    assert abs(cka.linear_cka(x, y * np.linspace(0.1, 10, 40)) - base) > 1e-3


def test_matches_the_closed_form_on_small_matrices():
    """CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on centred X, Y: computed here by hand on 3 x 2 matrices."""
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([[2.0, 1.0], [0.0, 0.0], [1.0, 3.0]])
    # Centred: x - [2/3, 2/3], y - [1, 4/3].
    xc = np.array([[1 / 3, -2 / 3], [-2 / 3, 1 / 3], [1 / 3, 1 / 3]])
    yc = np.array([[1.0, -1 / 3], [-1.0, -4 / 3], [0.0, 5 / 3]])
    expected = np.sum((yc.T @ xc) ** 2) / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert cka.linear_cka(x, y) == pytest.approx(expected, abs=1e-12)
    # And on a pair with a known value: the same column space up to rotation gives exactly 1.
    assert cka.linear_cka(x, x @ np.array([[0.0, -1.0], [1.0, 0.0]])) == pytest.approx(1.0, abs=1e-12)


def test_unbiased_hsic_is_the_song_estimator():
    """The unbiased HSIC against its definition with explicit sums over distinct index tuples (n = 6)."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    k, m = x @ x.T, y @ y.T
    n = 6
    kt, mt = k - np.diag(np.diag(k)), m - np.diag(np.diag(m))
    expected = (np.trace(kt @ mt) + kt.sum() * mt.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * kt.sum(0) @ mt.sum(0)) / (
        n * (n - 3)
    )
    assert cka.unbiased_hsic(k, m) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="at least 4 images"):
        cka.unbiased_hsic(k[:3, :3], m[:3, :3])


@pytest.mark.parametrize("seed", range(10))
def test_minibatch_estimate_agrees_with_the_full_one(seed):
    """Measured on digits vs a noisy ReLU projection, seeds 0-9, batches of 16, 64 and 256:
    largest gap 0.0098 (batch 16), so the tolerance is 0.02. Batches are shuffled: batches of
    one class would lose the between-class structure (the gap was 0.04-0.05 unshuffled)."""
    x = _digits() * 16
    rng = np.random.default_rng(seed)
    y = np.maximum(x @ rng.normal(size=(64, 32)), 0) + rng.normal(size=(len(x), 32)) * 5
    full = cka.linear_cka(x, y)
    for batch in (16, 64, 256):
        acc = cka.MinibatchCKA()
        for idx in cka.minibatches(len(x), batch, seed=seed):
            acc.add(x[idx], y[idx])
        assert acc.images == len(x)
        assert abs(acc.value - full) < 0.02, (batch, acc.value, full)


def test_minibatches_cover_every_image_once_and_none_is_too_small():
    parts = cka.minibatches(130, 64)
    assert sorted(np.concatenate(parts).tolist()) == list(range(130)) and min(map(len, parts)) >= 4
    with pytest.raises(ValueError, match="at least 4 test images"):
        cka.minibatches(3, 64)


@pytest.mark.parametrize("seed", range(10))
def test_a_reinitialised_layer_scores_below_kept_ones(seed):
    """A trained MLP on digits: its last hidden and output layers re-initialised (Glorot, as the MLP began).

    Measured over seeds 0-9: the first layer (kept) 1.0; the re-initialised hidden layer 0.55-0.81,
    the output 0.39-0.70. Linear CKA follows the high-variance directions, which even random
    weights partly keep, so "low" means clearly below kept layers, not near 0.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x / 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, random_state=seed).fit(x, y)

    def layers(weights, biases):
        h, out = x, []
        for i, (w, b) in enumerate(zip(weights, biases)):
            h = h @ w + b
            h = np.maximum(h, 0) if i < len(weights) - 1 else h
            out.append(h)
        return out

    rng = np.random.default_rng(100 + seed)
    w, b = list(clf.coefs_), list(clf.intercepts_)
    for k in (1, 2):
        limit = np.sqrt(6 / sum(w[k].shape))
        w[k], b[k] = rng.uniform(-limit, limit, w[k].shape), rng.uniform(-limit, limit, b[k].shape)
    scores = [cka.linear_cka(a, c) for a, c in zip(layers(clf.coefs_, clf.intercepts_), layers(w, b))]
    assert scores[0] == pytest.approx(1.0, abs=1e-12)
    assert scores[1] < 0.9 and scores[2] < 0.8


def test_per_block_in_a_real_network_marks_what_moved():
    """AlexNet at 64 px, conv4-conv5 tuned: its conv5 replaced by another init's. conv1-conv4 equal
    the start (CKA 1), conv5 scores below 1 (measured 0.973: a random conv5 keeps much of a random
    conv4's structure), and the findings sentence names it."""
    from convscope.models.build import base_of, build_classifier, set_tune_depth

    start = build_classifier("alexnet", 3, input_size=64, weights="none", seed=5)
    model = build_classifier("alexnet", 3, input_size=64, weights="none", seed=5)
    other = build_classifier("alexnet", 3, input_size=64, weights="none", seed=11)
    set_tune_depth(model, "alexnet", 2)
    base_of(model).get_layer("conv5").set_weights(base_of(other).get_layer("conv5").get_weights())
    rng = np.random.default_rng(0)
    x = rng.integers(0, 40, (40, 64, 64, 3)).astype(np.uint8)
    for i in range(len(x)):
        r, c = rng.integers(5, 30, 2)
        x[i, r : r + 20, c : c + 20, i % 3] = 220
    names = ["conv1", "conv2", "conv3", "conv4", "conv5"]
    values = cka.per_block(model, start, names, x, 16)
    np.testing.assert_allclose(values[:4], 1.0, atol=1e-5)
    assert values[4] < 0.99
    rows = [{"block": n, "trained": n in ("conv4", "conv5"), "cka": v} for n, v in zip(names, values)]
    text = cka.statement(rows, "Fine-tuning", cka.Thresholds(kept=0.995, unrelated=0.2))
    assert text.startswith(f"Fine-tuning changed conv5 (CKA {values[4]:.2f})")
    assert "conv4 kept their features" in text and "conv1–conv3 stayed frozen (1.0 by construction)" in text


def test_statement_for_a_run_that_left_nothing_of_its_start():
    rows = [{"block": f"conv{i}", "trained": True, "cka": v} for i, v in enumerate((0.15, 0.1, 0.05), 1)]
    text = cka.statement(rows, "Training from scratch", cka.Thresholds(kept=0.95, unrelated=0.2))
    assert text == "Training from scratch left nothing of the start: every block has CKA ≤ 0.15 with it."
