"""The CAM family beyond Grad-CAM, Score-CAM and Integrated Gradients, on both backends.

Independent references: the closed-form gradient of last conv -> GAP -> Dense (and
through a 2x2 max-pool) from tests/test_gradients.py, HiResCAM = Grad-CAM where the
gradient is constant per channel, EigenCAM from an eigendecomposition of the
activations' covariance, Score-CAM from a naive loop (one masked image per predict
call), Integrated Gradients exact on a network linear in its input and complete
(attributions sum to the logit difference) on a nonlinear one.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_gradients import _np, classifier, last_activations, other_backend, run_checks_on


def _closed_form_grads(model, a, targets, tail):
    w = np.asarray(model.get_layer("head").get_weights()[0], np.float64)[:, targets].T  # N x K
    n, h, wd, k = a.shape
    if tail == "gap":
        return np.broadcast_to((w / (h * wd))[:, None, None, :], a.shape)
    win = a.reshape(n, h // 2, 2, wd // 2, 2, k)
    is_max = win == win.max(axis=(2, 4), keepdims=True)
    return (is_max * (w / ((h // 2) * (wd // 2))).reshape(n, 1, 1, 1, 1, k)).reshape(a.shape)


def check_gradient_cams_closed_form():
    from convscope.analysis.explain import cams
    from convscope.analysis.explain.gradcam import gradcam, layer_gradients
    from convscope.analysis.split_model import cut

    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (4, 12, 12, 3)).astype(np.uint8)
    targets = np.array([0, 1, 2, 1])
    for tail in ("gap", "maxpool"):
        model = classifier(nested=True, tail=tail, last_activation="tanh")
        c = cut(model, "last")
        acts, grads = layer_gradients(c, images, targets, 3, batch_size=3)
        a = last_activations(model, images)
        g = _closed_form_grads(model, a, targets, tail)
        np.testing.assert_allclose(grads, g, rtol=1e-4, atol=1e-7)
        got = cams.gradient_cams(acts, grads)
        np.testing.assert_allclose(got["hirescam"], np.maximum((a * g).sum(-1), 0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got["layercam"], np.maximum((np.maximum(g, 0) * a).sum(-1), 0), rtol=1e-4, atol=1e-6)
        xw = (a * g).sum(axis=(1, 2)) / a.sum(axis=(1, 2))
        np.testing.assert_allclose(
            got["xgradcam"], np.maximum(np.einsum("nhwk,nk->nhw", a, xw), 0), rtol=1e-3, atol=1e-5
        )
        if tail == "gap":
            # a gradient constant over positions: HiResCAM is Grad-CAM
            np.testing.assert_allclose(got["hirescam"], gradcam(c, images, targets, 3)["gradcam"], rtol=1e-4, atol=1e-6)
        else:
            assert not np.allclose(got["hirescam"], gradcam(c, images, targets, 3)["gradcam"], atol=1e-6)
        # EigenCAM: first eigenvector of the positions' covariance of the activations
        for i in range(len(a)):
            m = a[i].reshape(-1, a.shape[-1])
            m = m - m.mean(axis=0)
            _, vecs = np.linalg.eigh(m.T @ m)
            proj = m @ vecs[:, -1]
            if (proj * m.sum(axis=1)).sum() < 0:
                proj = -proj
            np.testing.assert_allclose(
                got["eigencam"][i], np.maximum(proj, 0).reshape(a.shape[1:3]), rtol=1e-3, atol=1e-4
            )
        for name, m in got.items():
            assert m.shape == a.shape[:3] and np.isfinite(m).all() and m.max() > 0, name


def check_scorecam_matches_naive_loop():
    from convscope.analysis.explain import cams
    from convscope.analysis.plots import resize_map
    from convscope.analysis.split_model import cut

    model = classifier(nested=True, size=12, seed=6)
    c = cut(model, "last")
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (3, 12, 12, 3)).astype(np.uint8)
    targets = np.array([2, 0, 1])
    acts = np.asarray(c.to_layer.predict(images.astype(np.float32), verbose=0))
    for channels in (None, 2):
        fast = cams.scorecam(model, acts, images, targets, channels=channels, batch_size=4)
        for i in range(3):
            k = acts.shape[-1]
            keep = np.argsort(-acts[i].mean(axis=(0, 1)), kind="stable")[: channels or k]
            weights = np.zeros(k)
            for ch in keep:
                up = resize_map(acts[i, ..., ch], (12, 12)).astype(np.float64)
                span = up.max() - up.min()
                mask = (up - up.min()) / span if span > 0 else np.zeros_like(up)
                masked = (images[i].astype(np.float64) * mask[..., None]).astype(np.float32)
                weights[ch] = model.predict_on_batch(masked[None])[0, targets[i]]
            expect = np.maximum(np.einsum("hwk,k->hw", acts[i].astype(np.float64), weights), 0)
            np.testing.assert_allclose(fast[i], expect, rtol=1e-4, atol=1e-6)
        assert fast.max() > 0


def check_integrated_gradients():
    import keras
    from keras import layers

    from convscope.analysis.explain.integrated_gradients import integrated_gradients
    from convscope.analysis.explain.saliency import input_gradients
    from convscope.analysis.split_model import cut

    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (3, 10, 10, 3)).astype(np.uint8)
    targets = np.array([1, 0, 2])
    # Linear in the input (no activation anywhere): IG = x * gradient exactly, at any step count.
    keras.utils.set_random_seed(2)
    inp = keras.Input((10, 10, 3))
    h = layers.Conv2D(4, 3, name="last")(layers.Rescaling(1 / 255.0)(inp))
    out = layers.Dense(3, activation="softmax", name="head")(layers.GlobalAveragePooling2D()(h))
    linear = cut(keras.Model(inp, out), "last")
    ig = integrated_gradients(linear, images, targets, 3, steps=3, batch_size=4)
    grads = input_gradients(linear, images, targets, 3)
    np.testing.assert_allclose(ig.values, images * grads, rtol=1e-4, atol=1e-5)
    assert ig.completeness_error().max() < 1e-3
    # Nonlinear classifier: completeness within a tolerance that shrinks with more steps.
    c = cut(classifier(nested=True, size=10, seed=3, last_activation="tanh"), "last")
    coarse = integrated_gradients(c, images, targets, 3, steps=2, batch_size=5)
    fine = integrated_gradients(c, images, targets, 3, steps=64, batch_size=64)
    assert fine.completeness_error().max() < 0.05, fine.completeness_error()
    assert fine.completeness_error().mean() < coarse.completeness_error().mean()
    assert np.abs(fine.score - fine.baseline_score).min() > 1e-3  # a real difference to explain
    logits = _np(c.logits(c.to_layer.predict(images.astype(np.float32), verbose=0)))
    np.testing.assert_allclose(fine.score, logits[np.arange(3), targets], rtol=1e-4, atol=1e-5)
    assert fine.map.shape == (3, 10, 10) and (fine.map >= 0).all()


CHECKS = ["check_gradient_cams_closed_form", "check_scorecam_matches_naive_loop", "check_integrated_gradients"]


@pytest.mark.parametrize("check", CHECKS)
def test_on_loaded_backend(check):
    globals()[check]()


def test_on_other_backend():
    run_checks_on(other_backend(), "test_methods", CHECKS)
