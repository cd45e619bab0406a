"""Our AlexNet and the bvlc_alexnet.npy loader, checked against plain NumPy.

The reference forward pass below is written from the Caffe definition (explicit
windows, group loops, the LRN formula), not from the Keras code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from convscope import keras_compat  # noqa: E402
from convscope.models import build  # noqa: E402
from convscope.models.alexnet import AlexNet, LocalResponseNormalization, Top  # noqa: E402
from convscope.models.weights import WeightsError, load_alexnet_npy  # noqa: E402

# bvlc_alexnet.npy shapes (TF-converted layout) at 227 px.
BVLC_SHAPES = {
    "conv1": (11, 11, 3, 96),
    "conv2": (5, 5, 48, 256),
    "conv3": (3, 3, 256, 384),
    "conv4": (3, 3, 192, 384),
    "conv5": (3, 3, 192, 256),
    "fc6": (9216, 4096),
    "fc7": (4096, 4096),
    "fc8": (4096, 1000),
}
# (stride, padding, groups) per conv layer in the Caffe prototxt.
CONV = {"conv1": (4, 0, 1), "conv2": (1, 2, 2), "conv3": (1, 1, 1), "conv4": (1, 1, 2), "conv5": (1, 1, 2)}


# ---- NumPy reference ------------------------------------------------------------


def np_conv(x, w, b, stride, pad, groups):
    """x (H, W, C); w (kh, kw, C / groups, out); ReLU applied."""
    kh, kw, cin_g, out = w.shape
    x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    oh, ow = (x.shape[0] - kh) // stride + 1, (x.shape[1] - kw) // stride + 1
    y = np.zeros((oh, ow, out), dtype=np.float64)
    out_g = out // groups
    for g in range(groups):
        xs = x[:, :, g * cin_g : (g + 1) * cin_g]
        ws = w[:, :, :, g * out_g : (g + 1) * out_g]
        for i in range(oh):
            for j in range(ow):
                patch = xs[i * stride : i * stride + kh, j * stride : j * stride + kw, :]
                y[i, j, g * out_g : (g + 1) * out_g] = np.tensordot(patch, ws, axes=3)
    return np.maximum(y + b, 0)


def np_lrn(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe LRN ACROSS_CHANNELS: x / (k + alpha / size * sum of squares in the window) ** beta."""
    c = x.shape[-1]
    out = np.empty_like(x, dtype=np.float64)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c, ch + size // 2 + 1)
        s = np.sum(np.square(x[..., lo:hi]), axis=-1)
        out[..., ch] = x[..., ch] / (k + alpha / size * s) ** beta
    return out


def np_maxpool(x, size=3, stride=2):
    oh, ow = (x.shape[0] - size) // stride + 1, (x.shape[1] - size) // stride + 1
    y = np.empty((oh, ow, x.shape[2]))
    for i in range(oh):
        for j in range(ow):
            y[i, j] = x[i * stride : i * stride + size, j * stride : j * stride + size].max(axis=(0, 1))
    return y


def np_alexnet(x, p):
    """Forward pass of one image x (H, W, 3); returns the named intermediate outputs."""
    out = {}
    h = out["conv1"] = np_conv(x, *p["conv1"], *CONV["conv1"])
    h = out["norm1"] = np_lrn(h)
    h = np_maxpool(h)
    h = out["conv2"] = np_conv(h, *p["conv2"], *CONV["conv2"])
    h = np_maxpool(np_lrn(h))
    h = np_conv(h, *p["conv3"], *CONV["conv3"])
    h = np_conv(h, *p["conv4"], *CONV["conv4"])
    h = out["conv5"] = np_conv(h, *p["conv5"], *CONV["conv5"])
    h = np_maxpool(h).reshape(-1)  # (h, w, c) order, as the TF-converted fc6 expects
    h = out["fc6"] = np.maximum(h @ p["fc6"][0] + p["fc6"][1], 0)
    h = np.maximum(h @ p["fc7"][0] + p["fc7"][1], 0)
    out["fc8"] = h @ p["fc8"][0] + p["fc8"][1]
    return out


def random_params(model, seed=0) -> dict:
    """He-scaled random [W, b] for every weighted layer, in the TF-converted layout."""
    rng = np.random.default_rng(seed)
    params = {}
    for layer in model.layers:
        if layer.name in BVLC_SHAPES:
            shape = tuple(layer.kernel.shape)
            fan_in = int(np.prod(shape[:-1]))
            w = rng.normal(0, np.sqrt(2 / fan_in), size=shape).astype("float32")
            b = rng.normal(0, 0.1, size=shape[-1]).astype("float32")
            params[layer.name] = [w, b]
    return params


def save_npy(path: Path, params: dict) -> str:
    np.save(path, params, allow_pickle=True)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def to_caffe_layout(params: dict, pool5_hwc) -> dict:
    h, w, c = pool5_hwc
    out = {}
    for name, (wt, b) in params.items():
        if name.startswith("conv"):
            wt = wt.transpose(3, 2, 0, 1)  # (out, in / groups, kh, kw)
        elif name == "fc6":  # rows (h, w, c) -> Caffe's (c, h, w), then (out, in)
            wt = wt.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(wt.shape[1], -1)
        else:
            wt = wt.T
        out[name] = [np.ascontiguousarray(wt), b]
    return out


# ---- architecture ---------------------------------------------------------------


def test_architecture_matches_bvlc_alexnet():
    model = AlexNet(include_top=True)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["conv1"] == (55, 55, 96)
    assert shapes["pool1"] == (27, 27, 96)
    assert shapes["conv2"] == (27, 27, 256)
    assert shapes["pool2"] == (13, 13, 256)
    assert shapes["conv5"] == (13, 13, 256)
    assert shapes["pool5"] == (6, 6, 256)
    assert shapes["fc8"] == (1000,)
    for name, shape in BVLC_SHAPES.items():
        assert tuple(model.get_layer(name).kernel.shape) == shape, name
    assert model.count_params() == 60_965_224  # the published AlexNet parameter count
    assert [model.get_layer(n).groups for n in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]


@pytest.mark.parametrize("size", [11, 32, 64, 75, 99])
def test_reduced_inputs_degrade_gracefully(size):
    def pool(n):  # 3x3/2, "same" (ceil) once the side is below the window
        return (n - 3) // 2 + 1 if n >= 3 else -(-n // 2)

    side = pool(pool(pool((size - 11) // 4 + 1)))
    model = AlexNet(include_top=False, input_shape=(size, size, 3))
    assert model.output.shape[1:] == (side, side, 256)
    assert model.layers[-1].name == "pool5"
    y = model(np.ones((1, size, size, 3), "float32"))
    assert y.shape == (1, side, side, 256)


def test_too_small_input_is_refused():
    with pytest.raises(ValueError, match="at least 11"):
        AlexNet(include_top=False, input_shape=(10, 10, 3))


def test_lrn_matches_caffe_formula():
    x = np.random.default_rng(4).uniform(0, 300, size=(2, 3, 3, 7)).astype("float32")
    got = keras.ops.convert_to_numpy(LocalResponseNormalization()(x))
    want = np_lrn(x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not np.allclose(want, x, rtol=0.05)  # the values are large enough for LRN to matter


# ---- the .npy loader ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_alexnet():
    # 99 px: pool5 is 2x2, so fc6's (h, w, c) input order is exercised; narrow fc layers
    # keep the file small (conv shapes are the real ones).
    return AlexNet(
        include_top=True, input_shape=(99, 99, 3), classes=10, classifier_activation=None, top=Top(fc_units=64)
    )


def test_loaded_weights_reproduce_a_numpy_forward_pass(tmp_path, small_alexnet):
    model = small_alexnet
    params = random_params(model, seed=1)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        assert params[name][0].shape == BVLC_SHAPES[name]
    path = tmp_path / "bvlc_alexnet.npy"
    digest = save_npy(path, params)
    loaded = load_alexnet_npy(model, path, sha256=digest)
    assert loaded == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]

    x = np.random.default_rng(2).uniform(-120, 130, size=(99, 99, 3)).astype("float32")  # caffe-preprocessed
    names = ["conv1", "norm1", "conv2", "conv5", "fc6", "fc8"]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    got = dict(zip(names, (keras.ops.convert_to_numpy(t)[0] for t in probe(x[None]))))
    want = np_alexnet(
        x.astype(np.float64), {k: [w.astype(np.float64), b.astype(np.float64)] for k, (w, b) in params.items()}
    )
    for name in names:
        scale = np.abs(want[name]).max()
        assert scale > 0, name
        np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-4 * scale, err_msg=name)
    # LRN changes conv1's output noticeably here, so a wrong LRN would show.
    assert not np.allclose(want["norm1"], want["conv1"], rtol=0.05)


def test_caffe_layout_loads_the_same_weights(tmp_path, small_alexnet):
    model = small_alexnet
    params = random_params(model, seed=3)
    save_npy(tmp_path / "tf.npy", params)
    load_alexnet_npy(model, tmp_path / "tf.npy")
    want = [w.copy() for w in model.get_weights()]
    caffe = to_caffe_layout(params, model.get_layer("pool5").output.shape[1:])
    assert caffe["conv1"][0].shape == (96, 3, 11, 11)
    save_npy(tmp_path / "caffe.npy", caffe)
    model.set_weights([np.zeros_like(w) for w in want])
    load_alexnet_npy(model, tmp_path / "caffe.npy")
    for a, b in zip(model.get_weights(), want):
        np.testing.assert_array_equal(a, b)


class _Payload:
    """Unpickling this touches a marker file: stands in for malicious code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class _System:
    """Unpickling this would run a shell command through os.system."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


@pytest.mark.parametrize("kind", ["touch", "os.system"])
def test_a_pickle_that_calls_code_is_refused_without_the_call(tmp_path, small_alexnet, kind):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "bvlc_alexnet.npy"
    payload = _Payload(marker) if kind == "touch" else _System(f"touch {marker}")
    np.save(evil, {"conv1": [payload, np.zeros(96, "float32")]}, allow_pickle=True)
    with pytest.raises(WeightsError) as caught:
        load_alexnet_npy(small_alexnet, evil)
    message = str(caught.value)
    assert "refusing" in message and str(evil) in message
    assert ("pathlib" in message) if kind == "touch" else ("system" in message)
    assert not marker.exists()
    # A matching pin does not make it loadable either: safety does not rest on trust.
    with pytest.raises(WeightsError, match="refusing global"):
        load_alexnet_npy(small_alexnet, evil, sha256=hashlib.sha256(evil.read_bytes()).hexdigest())
    assert not marker.exists()


def test_sha256_pin_refuses_another_file(tmp_path, small_alexnet):
    path = tmp_path / "w.npy"
    save_npy(path, random_params(small_alexnet, seed=5))
    with pytest.raises(WeightsError, match="weights_sha256 expects"):
        load_alexnet_npy(small_alexnet, path, sha256="0" * 64)


def test_a_file_loads_without_checksum(tmp_path, small_alexnet):
    params = random_params(small_alexnet, seed=5)
    path = tmp_path / "w.npy"
    save_npy(path, params)
    load_alexnet_npy(small_alexnet, path)
    np.testing.assert_array_equal(small_alexnet.get_layer("conv3").get_weights()[0], params["conv3"][0])


def test_build_classifier_loads_alexnet_weights(tmp_path, monkeypatch):
    """weights="imagenet" reads bvlc_alexnet.npy from the Keras cache; a path works too."""
    monkeypatch.setattr(*keras_compat.keras_home_setting(), str(tmp_path / "keras"))
    monkeypatch.setenv("CONVSCOPE_ALEXNET_URL", "http://127.0.0.1:9/nothing-listens-here.npy")
    reference = AlexNet(include_top=True, input_shape=(227, 227, 3), classes=4, top=Top(fc_units=8))
    params = random_params(reference, seed=7)
    kw = dict(input_size=64, dropout=0.0, augment="none", seed=0)
    with pytest.raises(WeightsError, match="could not be downloaded") as caught:
        build.build_classifier("alexnet", 3, weights="imagenet", **kw)
    assert "bvlc_alexnet.npy" in str(caught.value) and "backbones.alexnet.weights" in str(caught.value)
    cache = tmp_path / "keras" / "models"
    assert [p.name for p in cache.iterdir()] == []  # the failed download left nothing behind
    digest = save_npy(cache / "bvlc_alexnet.npy", params)

    with pytest.raises(WeightsError, match="weights_sha256"):
        build.build_classifier("alexnet", 3, weights="imagenet", weights_sha256="1" * 64, **kw)
    model = build.build_classifier("alexnet", 3, weights="imagenet", weights_sha256=digest, **kw)
    base = build.base_of(model)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        np.testing.assert_array_equal(base.get_layer(name).get_weights()[0], params[name][0])
        np.testing.assert_array_equal(base.get_layer(name).get_weights()[1], params[name][1])

    model = build.build_classifier("alexnet", 3, weights=str(cache / "bvlc_alexnet.npy"), **kw)
    np.testing.assert_array_equal(build.base_of(model).get_layer("conv2").get_weights()[0], params["conv2"][0])
