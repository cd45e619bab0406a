"""Input and activation gradients (convscope.analysis.gradients) and Grad-CAM, on both backends.

Keras fixes its backend at import, so each check is a plain function run in this
process for the backend already loaded (TensorFlow by default) and, all checks of
a module together, in a fresh `python` with KERAS_BACKEND set to the other one
(`run_checks_on`).

Independent references: central finite differences of the model's own forward
pass in float64; Grad-CAM in closed form for last conv -> GAP -> Dense (channel
weight = Dense weight / (h*w)) and for last conv -> 2x2 max-pool -> GAP -> Dense
(the gradient reaches only each window's maximum).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent


def loaded_backend() -> str:
    import keras

    return keras.backend.backend()


def other_backend() -> str:
    return "jax" if loaded_backend() == "tensorflow" else "tensorflow"


def run_checks_on(backend: str, module: str, checks, *, timeout: float = 900) -> None:
    """Run the check functions `checks` of test module `module` in one fresh `python` with
    KERAS_BACKEND=backend (one interpreter for all: Keras import costs seconds); report each failure."""
    code = textwrap.dedent(f"""
        import sys, time, traceback

        sys.path.insert(0, {str(TESTS)!r})
        import {module} as m

        failed = []
        for name in {list(checks)!r}:
            try:
                t0 = time.perf_counter(), time.process_time()
                getattr(m, name)()
                print("PASSED", name, "%.1f s wall, %.1f s cpu" % (time.perf_counter() - t0[0], time.process_time() - t0[1]), flush=True)
            except Exception:
                failed.append(name)
                print("FAILED", name, flush=True)
                traceback.print_exc()
        sys.exit(1 if failed else 0)
        """)
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        failed = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("FAILED")]
        raise AssertionError(
            f"{module} checks failed on the {backend} backend: {failed or 'interpreter error'}\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-8000:]}"
        )


# ---- small models -----------------------------------------------------------------


def classifier(
    *, nested: bool, tail: str = "gap", size: int = 12, classes: int = 3, seed: int = 0, last_activation="relu"
):
    """A contract-shaped classifier: image -> preprocess -> base (conv, conv "last") [-> pool in base]
    -> GAP "pool" -> dropout -> Dense softmax "head"; nested=False builds the same layers flat."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    image = keras.Input((size, size, 3), name="image")
    pre = layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")
    convs = [
        layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1"),
        layers.Conv2D(5, 3, padding="same", activation=last_activation, name="last"),
    ]
    tail_layers = [layers.MaxPooling2D(2, name="pool5")] if tail == "maxpool" else []

    def base_stack(t):
        for layer in convs + tail_layers:
            t = layer(t)
        return t

    x = pre(image)
    if nested:
        base_in = keras.Input((size, size, 3))
        x = keras.Model(base_in, base_stack(base_in), name="base")(x)
    else:
        x = base_stack(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    out = layers.Dense(classes, activation="softmax", name="head")(x)
    model = keras.Model(image, out)
    # Non-trivial head bias and weights of both signs.
    head = model.get_layer("head")
    rng = np.random.default_rng(seed)
    head.set_weights(
        [rng.normal(0, 1, head.kernel.shape).astype("float32"), rng.normal(0, 0.1, classes).astype("float32")]
    )
    return model


def last_activations(model, images) -> np.ndarray:
    """The "last" conv's output computed independently: preprocess by hand, then the conv layers one by one."""
    x = np.asarray(images, np.float32) / 127.5 - 1.0
    for name in ("conv1", "last"):
        x = _np(_find(model, name)(x.astype(np.float32)))
    return x


def _find(model, name):
    for layer in model.layers:
        if layer.name == name:
            return layer
        if hasattr(layer, "layers"):
            try:
                return _find(layer, name)
            except KeyError:
                pass
    raise KeyError(name)


# ---- checks (run on each backend) -------------------------------------------------------


def check_input_gradients_finite_differences():
    """value_and_grad against central finite differences of the model's forward pass.

    float64 on TensorFlow. Keras 3.15 on JAX promotes every 64-bit dtype to 32 bits
    (keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE), so there the check runs in
    float32 with a larger step and tolerances to match.
    """
    import keras
    from keras import layers, ops

    from convscope.analysis.gradients import value_and_grad

    f64 = keras.backend.backend() == "tensorflow"
    dtype, eps, rtol, atol = ("float64", 1e-6, 1e-6, 1e-10) if f64 else ("float32", 1e-2, 2e-3, 2e-5)
    keras.utils.set_random_seed(3)
    inp = keras.Input((6, 6, 3), dtype=dtype)
    h = layers.Conv2D(4, 3, activation="sigmoid", dtype=dtype)(inp)
    h = layers.Conv2D(5, 3, activation="softplus", dtype=dtype)(h)
    h = layers.GlobalAveragePooling2D(dtype=dtype)(h)
    model = keras.Model(inp, layers.Dense(3, dtype=dtype)(h))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 6, 3)).astype(dtype)
    onehot = np.eye(3, dtype=dtype)[[0, 2]]

    def fn(t, oh):
        return ops.sum(model(t) * oh, axis=-1)

    def forward(xx):  # the same model, evaluated without any gradient machinery
        return (np.asarray(model.predict_on_batch(xx.astype(dtype)), np.float64) * onehot).sum(axis=1)

    value, grad = value_and_grad(fn, x, onehot)
    assert grad.dtype == np.dtype(dtype) and grad.shape == x.shape
    np.testing.assert_allclose(value, forward(x), rtol=1e-6)
    assert np.abs(grad).max() > 1e-3
    for flat in rng.choice(x.size, 16, replace=False):
        idx = np.unravel_index(flat, x.shape)
        e = np.zeros_like(x)
        e[idx] = eps
        fd = (forward(x + e) - forward(x - e)) / (2 * eps)
        np.testing.assert_allclose(grad[idx], fd[idx[0]], rtol=rtol, atol=atol)
        # examples do not interact: the other image's value does not move
        assert abs(fd[1 - idx[0]]) <= atol
    # compiled (weights as constants, or as arguments on JAX) and eager agree
    _, grad_c = value_and_grad(fn, x, onehot, compile=True)
    np.testing.assert_allclose(grad_c, grad, rtol=1e-5, atol=1e-9)
    value_v, grad_v = value_and_grad(fn, x, onehot, compile=True, variables=model.variables)
    np.testing.assert_allclose(grad_v, grad, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(value_v, value, rtol=1e-6)


def check_uint8_input_is_differentiable():
    """uint8 images (what the pipeline stores) give float gradients, equal to those of float input."""
    import keras
    from keras import layers, ops

    from convscope.analysis.gradients import value_and_grad

    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 3))
    model = keras.Model(
        inp, layers.Dense(2)(layers.GlobalAveragePooling2D()(layers.Conv2D(3, 3, activation="tanh")(inp / 255.0)))
    )
    x = np.random.default_rng(1).integers(0, 256, (3, 8, 8, 3)).astype(np.uint8)

    def fn(t):
        return ops.sum(model(t), axis=-1)

    _, g8 = value_and_grad(fn, x)
    _, gf = value_and_grad(fn, x.astype(np.float32))
    assert g8.dtype == np.float32
    assert np.abs(g8).max() > 0
    np.testing.assert_allclose(g8, gf, rtol=1e-6)


def check_gradcam_closed_form():
    """Grad-CAM / Grad-CAM++ equal their closed forms, nested base and flat model alike."""
    from convscope.analysis.explain.gradcam import gradcam, layer_gradients
    from convscope.analysis.split_model import cut

    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (5, 12, 12, 3)).astype(np.uint8)
    targets = np.array([0, 1, 2, 1, 0])
    for nested in (True, False):
        for tail in ("gap", "maxpool"):
            model = classifier(nested=nested, tail=tail, last_activation="tanh" if tail == "maxpool" else "relu")
            c = cut(model, "last")
            assert c.path[-1] == "last" and (c.path[1] == "base") == nested
            # the cut reproduces the model: probabilities, and softmax(logits)
            acts = c.to_layer.predict(images.astype(np.float32), verbose=0)
            probs = np.asarray(model.predict(images.astype(np.float32), verbose=0), np.float64)
            np.testing.assert_allclose(_np(c.from_layer(acts)), probs, rtol=1e-5, atol=1e-6)
            logits = _np(c.logits(acts))
            np.testing.assert_allclose(
                np.exp(logits) / np.exp(logits).sum(1, keepdims=True), probs, rtol=1e-4, atol=1e-6
            )

            a = last_activations(model, images)
            np.testing.assert_allclose(acts, a, rtol=1e-4, atol=1e-5)
            w = np.asarray(model.get_layer("head").get_weights()[0], np.float64)[:, targets].T  # N x K
            n, h, wd, k = a.shape
            if tail == "gap":
                g = np.broadcast_to((w / (h * wd))[:, None, None, :], a.shape)
            else:
                # 2x2 max-pool: the gradient goes to each window's maximum only
                win = a.reshape(n, h // 2, 2, wd // 2, 2, k)
                is_max = win == win.max(axis=(2, 4), keepdims=True)
                g = (is_max * (w / ((h // 2) * (wd // 2))).reshape(n, 1, 1, 1, 1, k)).reshape(a.shape)
            _, grads = layer_gradients(c, images, targets, 3, batch_size=2)
            np.testing.assert_allclose(grads, g, rtol=1e-4, atol=1e-7)

            maps = gradcam(c, images, targets, 3, batch_size=4)
            expect = np.maximum(np.einsum("nhwk,nk->nhw", a, g.mean(axis=(1, 2))), 0)
            np.testing.assert_allclose(maps["gradcam"], expect, rtol=1e-4, atol=1e-6)
            assert maps["gradcam"].shape == (5, h, wd)
            if tail == "gap":
                gk = w / (h * wd)  # N x K, one gradient per channel
                s = a.sum(axis=(1, 2))
                denom = 2 * gk**2 + s * gk**3
                alpha = np.where(denom != 0, gk**2 / np.where(denom != 0, denom, 1), 0)
                weights = h * wd * alpha * np.maximum(gk, 0)
                expect_pp = np.maximum(np.einsum("nhwk,nk->nhw", a, weights), 0)
                np.testing.assert_allclose(maps["gradcam++"], expect_pp, rtol=1e-4, atol=1e-6)


def check_saliency_finite_differences():
    """Saliency = max over colours of |d logit / d pixel|, against finite differences of the logits."""
    from convscope.analysis.explain.saliency import SmoothGrad, input_gradients, saliency, smoothgrad
    from convscope.analysis.split_model import cut

    model = classifier(nested=True, size=8, last_activation="tanh")
    c = cut(model, "last")
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (2, 8, 8, 3))
    targets = np.array([2, 0])
    grads = input_gradients(c, images, targets, 3, batch_size=2)

    def logit(xx):
        return _np(c.logits(c.to_layer.predict(np.asarray(xx, np.float32), verbose=0)))[np.arange(2), targets]

    eps = 2.0  # float32 network: a step of 2 grey levels keeps rounding noise small
    for flat in rng.choice(images.size, 12, replace=False):
        idx = np.unravel_index(flat, images.shape)
        e = np.zeros_like(images)
        e[idx] = eps
        fd = (logit(images + e) - logit(images - e)) / (2 * eps)
        np.testing.assert_allclose(grads[idx], fd[idx[0]], rtol=0.05, atol=2e-5)
    np.testing.assert_allclose(saliency(c, images, targets, 3), np.abs(grads).max(-1), rtol=1e-6)
    # SmoothGrad with no noise is the vanilla map; with noise it differs but stays finite
    np.testing.assert_allclose(
        smoothgrad(c, images, targets, 3, SmoothGrad(samples=3, noise=0.0)), np.abs(grads).max(-1), rtol=1e-5
    )
    sg = smoothgrad(c, images, targets, 3, SmoothGrad(samples=4, noise=0.2), batch_size=3)
    assert sg.shape == (2, 8, 8) and np.isfinite(sg).all() and not np.allclose(sg, np.abs(grads).max(-1))


def _np(t):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(t), np.float64)


# ---- tests ----------------------------------------------------------------------

CHECKS = [
    "check_input_gradients_finite_differences",
    "check_uint8_input_is_differentiable",
    "check_gradcam_closed_form",
    "check_saliency_finite_differences",
]


@pytest.mark.parametrize("check", CHECKS)
def test_on_loaded_backend(check):
    """Each check on the backend this process runs (TensorFlow unless KERAS_BACKEND says otherwise)."""
    globals()[check]()


def test_on_other_backend():
    """Every check again on the other backend (JAX by default), in one subprocess."""
    run_checks_on(other_backend(), "test_gradients", CHECKS)


def test_cut_names_a_missing_layer():
    from convscope.analysis.split_model import cut

    model = classifier(nested=True)
    with pytest.raises(KeyError, match="'nope'.*backbones.py"):
        cut(model, "nope")
