"""The model contract: every backbone builds small, tunes to the right depth and trains.

Expected trainable sets are computed from the registry's block boundaries by
walking the layer graph (descendants of a boundary), independently of
set_tune_depth, which slices the topologically ordered layer list.
test_jax_backend re-runs the build + train-step test under KERAS_BACKEND=jax.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from convscope import backbones as registry  # noqa: E402
from convscope import keras_compat  # noqa: E402
from convscope.models import build  # noqa: E402
from convscope.models.weights import WeightsError  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONTRACT = ["image", "augment", "preprocess", "base", "pool", "dropout", "head"]
# AlexNet and MobileNetV2 are the ones test_jax_backend re-runs under JAX.
JAX_BACKBONES = ("alexnet", "mobilenetv2")


def small_size(name: str) -> int:
    return max(32, registry.get(name).min_size)


def predecessors(model) -> dict[str, set[str]]:
    """Layer name -> names of the layers feeding it, from the functional graph."""
    names = {layer.name for layer in model.layers}
    preds = {}
    for layer in model.layers:
        preds[layer.name] = {
            parent.operation.name
            for node in layer._inbound_nodes
            for parent in node.parent_nodes
            if parent.operation.name in names
        }
    return preds


def _reachable(edges: dict[str, set[str]], root: str) -> set[str]:
    seen, todo = set(), [root]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def descendants(preds: dict[str, set[str]], root: str) -> set[str]:
    succ: dict[str, set[str]] = {n: set() for n in preds}
    for n, ps in preds.items():
        for p in ps:
            succ[p].add(n)
    return _reachable(succ, root)


def ancestors(preds: dict[str, set[str]], root: str) -> set[str]:
    return _reachable(preds, root)


def expected_trainable_layers(base, backbone: str, depth) -> set[str]:
    """Names of base layers that depth `depth` should train, from the graph."""
    blocks = registry.get(backbone).blocks
    everything = {layer.name for layer in base.layers}
    k = len(blocks) if depth == "all" else depth
    if k == 0:
        return set()
    if k >= len(blocks):
        return everything
    return descendants(predecessors(base), blocks[-k - 1])


def bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize("backbone", sorted(registry.BACKBONES))
def test_backbone_builds_tunes_and_trains_a_step(backbone):
    size = small_size(backbone)
    model = build.build_classifier(
        backbone, 3, input_size=size, weights="none", dropout=0.3, augment="standard", seed=3
    )
    assert [layer.name for layer in model.layers] == CONTRACT
    assert model.get_layer("head").dtype_policy.name == "float32"
    assert model.get_layer("head").units == 3
    assert tuple(model.input_shape) == (None, size, size, 3)
    base = build.base_of(model)
    assert base.name == "base" and isinstance(base, keras.Model)
    spec = registry.get(backbone)
    base_names = {layer.name for layer in base.layers}
    assert set(spec.blocks) | {spec.last_conv} <= base_names

    # Every layer's own trainable variables, before any freezing (freezing flips them).
    natural = {layer.name: {id(v) for v in layer.trainable_weights} for layer in base.layers}
    head_vars = {id(v) for v in model.get_layer("head").trainable_weights}
    assert len(head_vars) == 2
    n_blocks = len(spec.blocks)
    for depth in (0, 1, 2, n_blocks, "all"):
        build.set_tune_depth(model, backbone, depth)
        want_layers = expected_trainable_layers(base, backbone, depth)
        want = set().union(*(natural[n] for n in want_layers)) | head_vars
        got = {id(v) for v in model.trainable_weights}
        assert got == want, f"{backbone} depth {depth}: {len(got)} trainable variables, expected {len(want)}"
        if depth == 0:
            assert len(got) == 2
        if depth == "all":
            assert len(got) == len(set().union(*natural.values())) + 2
        for layer in bn_layers(base):
            assert layer.trainable == (layer.name in want_layers)
    with pytest.raises(ValueError, match="train.tune_depth"):
        build.set_tune_depth(model, backbone, n_blocks + 1)

    # One real training step at depth 2: frozen weights and frozen BN statistics stay,
    # the head and BN layers of tuned blocks move.
    build.set_tune_depth(model, backbone, 2)
    trainable_layers = expected_trainable_layers(base, backbone, 2)
    frozen = [layer for layer in base.layers if layer.weights and layer.name not in trainable_layers]
    assert frozen
    before = {id(v): np.array(v.numpy()) for layer in frozen for v in layer.weights}
    head_before = model.get_layer("head").get_weights()[0].copy()
    live_bn = [layer for layer in bn_layers(base) if layer.name in trainable_layers]
    live_bn_before = [np.array(layer.moving_variance.numpy()) for layer in live_bn]
    # On TensorFlow, tracing the train step of a 150-300 layer net costs ~60 s on a busy
    # 2-core box and an eager step ~2 s with the same semantics; AlexNet keeps the traced
    # path. JAX compiles every eager op separately, so there jit is the cheaper one.
    eager = backbone != "alexnet" and keras.backend.backend() == "tensorflow"
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", run_eagerly=eager)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(4, size, size, 3), dtype=np.uint8)
    y = np.array([0, 1, 2, 1])
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for layer in frozen:
        for v in layer.weights:
            np.testing.assert_array_equal(v.numpy(), before[id(v)], err_msg=f"{backbone}: frozen {v.path} moved")
    assert not np.allclose(model.get_layer("head").get_weights()[0], head_before)
    for layer, var in zip(live_bn, live_bn_before):
        assert not np.allclose(layer.moving_variance.numpy(), var), f"{layer.name} should update in training"
    probs = keras.ops.convert_to_numpy(model(x, training=False))
    assert probs.shape == (4, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)


@pytest.mark.parametrize("backbone", sorted(registry.BACKBONES))
def test_registry_facts_match_the_real_models(backbone):
    """Block boundaries and last_conv are layers of the real application (ours for AlexNet),
    in order, each a cut point; min_size is the application's own lower limit."""
    spec = registry.get(backbone)
    size = small_size(backbone)
    if spec.keras_app is None:
        from convscope.models.alexnet import AlexNet

        app = AlexNet(include_top=False, input_shape=(size, size, 3))
    else:
        constructor = getattr(keras.applications, spec.keras_app)
        with pytest.raises(ValueError, match=str(spec.min_size)):
            constructor(include_top=False, weights=None, input_shape=(spec.min_size - 1,) * 2 + (3,))
        app = constructor(include_top=False, weights=None, input_shape=(size, size, 3))
    names = [layer.name for layer in app.layers]
    for name in (*spec.blocks, spec.last_conv):
        assert name in names, f"{backbone}: {name!r} is not a layer of keras.applications.{spec.keras_app}"
    preds = predecessors(app)
    everything = set(names)
    previous = None
    for boundary in spec.blocks:
        below, above = ancestors(preds, boundary), descendants(preds, boundary)
        # A cut point: every other layer is strictly before or strictly after it,
        # so "the last k blocks" is a well-defined set of layers.
        assert below | above | {boundary} == everything, f"{backbone}: {boundary} is not a cut point"
        if previous is not None:
            assert previous in below, f"{backbone}: blocks out of order at {boundary}"
        previous = boundary
    assert names[-1] == spec.blocks[-1] or names[-1] in descendants(preds, spec.blocks[-1])
    last = app.get_layer(spec.last_conv)
    assert len(last.output.shape) == 4  # a spatial map, as Grad-CAM needs
    # The top block ends at the base's output (nothing after the last boundary is lost).
    assert app.get_layer(spec.blocks[-1]).output.shape == app.output.shape or backbone == "alexnet"


@pytest.mark.parametrize(
    "backbone,module",
    [
        ("vgg16", "vgg16"),
        ("resnet50", "resnet50"),
        ("inceptionv3", "inception_v3"),
        ("mobilenetv2", "mobilenet_v2"),
        ("efficientnetb0", "efficientnet"),
    ],
)
def test_preprocess_layer_matches_keras_preprocess_input(backbone, module):
    x = np.random.default_rng(1).integers(0, 256, size=(2, 8, 8, 3)).astype("float32")
    want = getattr(keras.applications, module).preprocess_input(x.copy())
    got = build.Preprocess(registry.get(backbone).preprocess)(x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-3)


def test_alexnet_preprocess_is_caffe():
    x = np.random.default_rng(2).integers(0, 256, size=(1, 4, 4, 3)).astype("float32")
    got = keras.ops.convert_to_numpy(build.Preprocess(registry.get("alexnet").preprocess)(x))
    bgr = x[..., ::-1] - np.array([103.939, 116.779, 123.68], dtype="float32")
    np.testing.assert_allclose(got, bgr, atol=1e-4)


def test_augment_presets_change_training_images_only():
    x = np.random.default_rng(3).integers(0, 256, size=(4, 32, 32, 3)).astype("float32")
    for preset in build.AUGMENT_PRESETS:
        aug = build.augmentation(preset, seed=5)
        assert aug.name == "augment"
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(aug(x, training=False)), x)
        trained = keras.ops.convert_to_numpy(aug(x, training=True))
        assert trained.shape == x.shape
        if preset == "none":
            np.testing.assert_array_equal(trained, x)
        else:
            assert not np.allclose(trained, x)
    with pytest.raises(ValueError, match="train.augment"):
        build.augmentation("heavy")


def test_too_small_input_names_the_config_key():
    with pytest.raises(ValueError, match=r"backbones\.inceptionv3\.input_size"):
        build.build_classifier("inceptionv3", 3, input_size=64, weights="none", dropout=0, augment="none", seed=0)


def test_weights_from_files_round_trip(tmp_path):
    """weights: <path> for .weights.h5 (a base) and .keras (a whole classifier)."""
    kw = dict(input_size=32, dropout=0.0, augment="none")
    src = build.build_classifier("mobilenetv2", 3, weights="none", seed=1, **kw)
    base_file = tmp_path / "base.weights.h5"
    build.base_of(src).save_weights(base_file)
    model_file = tmp_path / "model.keras"
    src.save(model_file)
    want = [w.copy() for w in build.base_of(src).get_weights()]
    for path in (base_file, model_file):
        dst = build.build_classifier("mobilenetv2", 3, weights=str(path), seed=2, **kw)
        got = build.base_of(dst).get_weights()
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    fresh = build.build_classifier("mobilenetv2", 3, weights="none", seed=2, **kw)
    assert not all(np.array_equal(a, b) for a, b in zip(build.base_of(fresh).get_weights(), want))
    # The saved classifier reloads with its custom layers and predicts the same.
    x = np.random.default_rng(0).integers(0, 256, size=(2, 32, 32, 3)).astype("uint8")
    reloaded = build.load_model(model_file)
    assert [layer.name for layer in reloaded.layers] == CONTRACT
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(x, training=False)),
        keras.ops.convert_to_numpy(src(x, training=False)),
        atol=1e-5,
    )
    with pytest.raises(WeightsError, match=r"backbones\.mobilenetv2\.weights.*not found"):
        build.build_classifier("mobilenetv2", 3, weights=str(tmp_path / "nope.weights.h5"), seed=0, **kw)
    with pytest.raises(WeightsError, match="does not fit"):
        build.build_classifier("vgg16", 3, weights=str(model_file), seed=0, **kw)


def test_configure_precision_is_float32_without_gpu():
    try:
        assert build.configure_precision() == "float32"
        assert keras.config.dtype_policy().name == "float32"
    finally:
        keras.config.set_dtype_policy("float32")


def test_mixed_precision_keeps_head_float32():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build.build_classifier(
            "alexnet", 3, input_size=32, weights="none", dropout=0.0, augment="light", seed=0
        )
        assert model.get_layer("head").compute_dtype == "float32"
        assert model.get_layer("preprocess").compute_dtype == "float32"
        assert build.base_of(model).get_layer("conv1").compute_dtype == "bfloat16"
        out = model.predict(np.zeros((1, 32, 32, 3), "uint8"), verbose=0)
        assert out.dtype == np.float32
    finally:
        keras.config.set_dtype_policy("float32")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_imagenet_weights_give_a_clear_message(tmp_path, monkeypatch):
    """No network: an empty Keras cache and a proxy that refuses every connection.

    The real keras.utils.get_file runs and fails as it does offline.
    """
    import urllib.request

    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setattr(*keras_compat.keras_home_setting(), str(home))  # what KERAS_HOME sets at import
    proxy = f"http://127.0.0.1:{_closed_port()}"
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, proxy)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # rebuilt from the proxy settings above
    models = home / "models"
    kw = dict(input_size=32, weights="imagenet", dropout=0.0, augment="none", seed=0)

    with pytest.raises(WeightsError) as caught:
        build.build_classifier("mobilenetv2", 3, **kw)
    message = str(caught.value)
    # Keras' file for MobileNetV2 without top (alpha 1.0; non-standard sizes use the 224 weights).
    fname = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    assert str(models / fname) in message and f"directory {models}" in message
    assert f"https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/{fname}" in message
    assert "backbones.mobilenetv2.weights" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained traceback
    assert not (models / fname).exists()  # no partial download left behind

    with pytest.raises(WeightsError) as caught:
        build.build_classifier("alexnet", 3, **kw)
    message = str(caught.value)
    assert str(models / "bvlc_alexnet.npy") in message and "could not be downloaded" in message
    assert "bvlc_alexnet.npy" in message.split("download\n")[1].splitlines()[0]  # the URL to fetch by hand
    assert not (models / "bvlc_alexnet.npy").exists()


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax", reason="already running under JAX")
def test_jax_backend():
    """The build + one-train-step tests again, under KERAS_BACKEND=jax (fixed at import)."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    selected = [f"{__file__}::test_backbone_builds_tunes_and_trains_a_step[{b}]" for b in JAX_BACKBONES]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selected],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert f"{len(JAX_BACKBONES)} passed" in proc.stdout, proc.stdout[-2000:]
