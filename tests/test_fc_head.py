"""The "fc" head: AlexNet and VGG16 keep their pretrained fully connected layers.

Depth -> trainable layers is checked on real models (weights=none), the choice
of head and its validation on configs, the embedding layer on a forward pass.
"""

from __future__ import annotations

import numpy as np
import pytest

from convscope import backbones as registry
from convscope import config as cfg
from convscope import grid, layout
from convscope.layout import Results
from convscope.training.strategies import phases
from tests.conftest import tiny_config

keras = pytest.importorskip("keras")

from convscope.models import build  # noqa: E402
from convscope.models.alexnet import AlexNet, Top  # noqa: E402
from convscope.models.weights import ALEXNET_LAYERS, load_alexnet_npy  # noqa: E402


def test_auto_head_is_fc_only_at_the_native_size():
    assert registry.head("alexnet") == "fc" and registry.head("vgg16", {}) == "fc"
    assert registry.head("alexnet", {"input_size": 64}) == "pooled"
    assert registry.head("vgg16", {"input_size": 224, "head": "pooled"}) == "pooled"
    for name in ("resnet50", "inceptionv3", "mobilenetv2", "efficientnetb0"):
        assert registry.head(name) == "pooled"
    assert registry.tune_blocks("alexnet", "fc") == ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
    assert registry.tune_blocks("alexnet", "pooled") == registry.get("alexnet").blocks
    assert registry.embedding_layer("alexnet", "fc") == "fc7" and registry.embedding_layer("vgg16", "fc") == "fc2"
    assert registry.embedding_layer("vgg16", "pooled") == "pool"


@pytest.mark.parametrize(
    ("backbone", "options", "words"),
    [
        ("alexnet", {"input_size": 64, "head": "fc"}, "native input size 227"),
        ("vgg16", {"input_size": 96, "head": "fc"}, "native input size 224"),
        ("resnet50", {"head": "fc"}, "no pretrained fully connected layers"),
    ],
)
def test_fc_head_where_it_cannot_fit_fails_validation_naming_the_key(backbone, options, words):
    config = tiny_config(backbones={backbone: options})
    with pytest.raises(cfg.ConfigError) as caught:
        cfg.load_and_validate(config)
    message = str(caught.value)
    assert f"config key backbones.{backbone}.head" in message and words in message
    with pytest.raises(ValueError, match=f"backbones.{backbone}.head"):
        build.build_classifier(backbone, 3, weights="none", **options)


def test_tune_depth_counts_fc_layers_in_grid_and_progressive():
    native = cfg.load_and_validate(tiny_config(backbones={"alexnet": {}}, train={"grid": {"tune_depth": [7]}}))
    assert grid.backbone_options(native, "alexnet")["head"] == "fc"  # resolved into the train rule's params
    assert grid.run_ids(native, "alexnet") == ["finetune-lr1e-4-do0.5-d7"]
    small = cfg.load_and_validate(
        tiny_config(backbones={"alexnet": {"input_size": 64}}, train={"grid": {"tune_depth": [7]}})
    )
    with pytest.raises(ValueError, match="more blocks than alexnet has"):
        grid.run_ids(small, "alexnet")
    hp = {"epochs": 16, "learning_rate": 0.1, "tune_depth": "all"}
    walk = phases("progressive", "alexnet", hp, {"every": 2, "lr_decay": 0.5}, head="fc")
    assert [p.depth for p in walk] == [0, 1, 2, 3, 4, 5, 6, "all"]  # fc8, fc7, fc6, conv5, ... all
    assert len(phases("progressive", "alexnet", hp, {"every": 2, "lr_decay": 0.5}, head="pooled")) == 6


def _trainable_layers(model) -> set[str]:
    by_var = {id(v): layer.name for layer in build.base_of(model).layers for v in layer.weights}
    return {by_var[id(v)] for v in model.trainable_weights if id(v) in by_var}


@pytest.fixture(scope="module")
def alexnet_fc():
    return build.build_classifier("alexnet", 3, weights="none", dropout=0.5, seed=0)  # 227 px: fc head


def test_alexnet_fc_head_keeps_fc6_fc7_with_dropout(alexnet_fc):
    model = alexnet_fc
    assert build.head_kind(model) == "fc"
    assert [layer.name for layer in model.layers] == ["image", "augment", "preprocess", "base", "dropout", "head"]
    base = build.base_of(model)
    assert [layer.name for layer in base.layers][-5:] == ["pool5", "flatten", "fc6", "drop6", "fc7"]
    assert base.get_layer("fc6").kernel.shape == (9216, 4096) and base.get_layer("fc7").units == 4096
    assert base.get_layer("drop6").rate == 0.5 and model.get_layer("dropout").rate == 0.5  # drop6, drop7
    assert model.get_layer("head").kernel.shape == (4096, 3)  # the new fc8


@pytest.mark.parametrize(
    ("depth", "layers"),
    [
        (0, set()),
        (1, {"fc7"}),
        (2, {"fc6", "fc7"}),
        (3, {"conv5", "fc6", "fc7"}),
        (4, {"conv4", "conv5", "fc6", "fc7"}),
        ("all", {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"}),
    ],
)
def test_alexnet_depth_trains_the_seeds_layers(alexnet_fc, depth, layers):
    build.set_tune_depth(alexnet_fc, "alexnet", depth)
    assert _trainable_layers(alexnet_fc) == layers
    head = {id(v) for v in alexnet_fc.get_layer("head").trainable_weights}
    assert head <= {id(v) for v in alexnet_fc.trainable_weights}  # fc8 always trains


def test_alexnet_fc_embedding_is_fc7(alexnet_fc):
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 227, 227, 3)).astype("float32")
    emb = keras.ops.convert_to_numpy(build.embedder(alexnet_fc, "alexnet")(x))
    assert build.embedding_layer(alexnet_fc, "alexnet") == "fc7" and emb.shape == (2, 4096)
    # fc7 by hand: the base's layers up to fc6, then relu(fc6 @ W7 + b7)
    base = build.base_of(alexnet_fc)
    pre = keras.Model(base.input, base.get_layer("fc6").output)
    h = keras.ops.convert_to_numpy(pre(alexnet_fc.get_layer("preprocess")(x)))
    w7, b7 = base.get_layer("fc7").get_weights()
    np.testing.assert_allclose(emb, np.maximum(h @ w7 + b7, 0), rtol=1e-4, atol=1e-4)
    probs = keras.ops.convert_to_numpy(alexnet_fc(x))
    w8, b8 = alexnet_fc.get_layer("head").get_weights()
    z = emb @ w8 + b8
    np.testing.assert_allclose(probs, np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-4, atol=1e-5)


def test_bvlc_file_fills_fc6_fc7_of_the_fc_base(tmp_path):
    """At 227 px the kept fc6/fc7 take the file's weights; fc8 (1000 classes) is not loaded."""
    base = AlexNet(include_top=True, input_shape=(227, 227, 3), name="base", top=Top(fc_units=16, fc8=False))
    rng = np.random.default_rng(1)
    shapes = {layer.name: (tuple(layer.kernel.shape), layer.bias.shape[0]) for layer in base.layers if layer.weights}
    shapes["fc8"] = ((16, 1000), 1000)
    params = {
        n: [rng.normal(size=k).astype("float32"), rng.normal(size=b).astype("float32")] for n, (k, b) in shapes.items()
    }
    assert set(params) == set(ALEXNET_LAYERS)
    np.save(tmp_path / "w.npy", params, allow_pickle=True)
    assert load_alexnet_npy(base, tmp_path / "w.npy") == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    np.testing.assert_array_equal(base.get_layer("fc6").get_weights()[0], params["fc6"][0])


def test_vgg16_fc_head_keeps_fc1_fc2():
    model = build.build_classifier("vgg16", 3, weights="none", dropout=0.25, seed=0)
    base = build.base_of(model)
    assert [layer.name for layer in base.layers][-5:] == ["block5_pool", "flatten", "fc1", "drop_fc1", "fc2"]
    assert base.get_layer("drop_fc1").rate == 0.25
    build.set_tune_depth(model, "vgg16", 2)
    assert _trainable_layers(model) == {"fc1", "fc2"}
    build.set_tune_depth(model, "vgg16", 3)
    assert _trainable_layers(model) == {"fc1", "fc2", "block5_conv1", "block5_conv2", "block5_conv3"}
    assert build.embedding_layer(model, "vgg16") == "fc2"


def test_features_strategy_embeds_at_fc7_when_the_fc_stack_is_kept(tmp_path):
    from convscope.training.features import FeatureSettings, compute_embeddings

    rng = np.random.default_rng(3)
    prepared = Results(tmp_path).prepared_dir(227)
    prepared.mkdir(parents=True)
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        np.save(layout.prepared_in(prepared, split), rng.integers(0, 255, size=(n, 227, 227, 3), dtype=np.uint8))
        np.save(layout.prepared_in(prepared, split, "labels.npy"), np.arange(n) % 3)
    info = compute_embeddings(
        prepared_dir=prepared,
        out_dir=(feats := Results(tmp_path).features_dir("alexnet")),
        features=FeatureSettings(
            backbone="alexnet",
            options={"weights": "none", "head": "fc"},
            input_size=227,
            backend=keras.backend.backend(),
            seed=0,
            batch_size=4,
        ),
        num_classes=3,
    )
    assert {s["dim"] for s in info["splits"].values()} == {4096}  # fc7, not the 256 channels of pool5
    emb = np.load(layout.embedding_in(feats, "train"))
    assert emb.shape == (4, 4096) and emb.min() >= 0  # fc7's ReLU
