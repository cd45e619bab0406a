"""The image -> layer cut rebuilt for images of any size (convscope/analysis/flexible_input.py).

On the real job's four backbones at their native input sizes (random weights: the
graph, not what it learned, is under test): at the native size the rebuilt cut
computes what split_model's fixed cut computes, on the same variables; at a smaller
size it returns a smaller map; below the smallest size that leaves a 1 x 1 map it
refuses, naming the config key and that size. Feature visualisation at a size below
the input optimises images of that size through it and raises its channels.
Each classifier is built once for the module (ResNet50 and InceptionV3 cost seconds).
"""

from __future__ import annotations

import numpy as np
import pytest

from convscope import backbones as registry

# The smallest input side each shows a smaller map at: the schema's minimum of
# analysis.filter_vis.size (32), or the backbone's own minimum above it.
SMALL = {"alexnet": 35, "vgg16": 32, "resnet50": 32, "inceptionv3": registry.get("inceptionv3").min_size}


class _Cuts(dict):
    """backbone -> split_model.cut of its classifier (native size, weights none) at its last conv layer,
    each built on first use (a subset of the tests builds only what it needs)."""

    def __missing__(self, name):
        from convscope.analysis.split_model import cut
        from convscope.models.build import build_classifier

        model = build_classifier(name, 3, weights="none", seed=1)
        self[name] = cut(model, registry.get(name).last_conv)
        return self[name]


@pytest.fixture(scope="module")
def cuts():
    return _Cuts()


@pytest.mark.parametrize("name", list(SMALL))
def test_flexible_cut_equals_fixed_cut_and_shrinks_with_the_image(cuts, name):
    from convscope.analysis.flexible_input import rebuild

    fixed = cuts[name].to_layer
    native = registry.get(name).input_size
    flexible = rebuild(fixed)
    # the same layer objects: the same variables, nothing copied
    assert [id(v) for v in flexible.variables] == [id(v) for v in fixed.variables]
    x = np.random.default_rng(0).integers(0, 256, (1, native, native, 3)).astype(np.float32)
    want = np.asarray(fixed(x))
    got = np.asarray(flexible(x))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
    small = np.asarray(flexible(x[:, : SMALL[name], : SMALL[name]]))
    assert small.shape[0] == 1 and small.shape[3] == want.shape[3]
    assert 1 <= small.shape[1] < want.shape[1] and 1 <= small.shape[2] < want.shape[2], (small.shape, want.shape)


@pytest.mark.parametrize("name", ["alexnet", "inceptionv3"])
def test_a_too_small_size_names_the_key_and_the_smallest_that_works(cuts, name):
    from convscope.analysis.flexible_input import at_side, map_size

    fixed = cuts[name].to_layer
    smallest = at_side(fixed, SMALL[name])  # works
    assert map_size(smallest, SMALL[name]) == (1, 1), "SMALL is the smallest side with a map"
    with pytest.raises(ValueError, match=rf"analysis\.filter_vis\.size.* at least {SMALL[name]} px"):
        at_side(fixed, SMALL[name] - 1)


def test_the_native_size_keeps_the_fixed_cut(cuts):
    from convscope.analysis.flexible_input import at_side

    fixed = cuts["vgg16"].to_layer
    assert at_side(fixed, 224) is fixed


def test_feature_visualisation_below_the_input_size_raises_its_channels(cuts):
    """AlexNet (227 px input) visualised at 35 px: pictures of that size whose channels beat their start."""
    from convscope.analysis.flexible_input import at_side
    from convscope.analysis.standard.filter_vis import Settings, channel_means, visualize

    to_layer = cuts["alexnet"].to_layer
    small = at_side(to_layer, 35)
    # the two channels most active on random 35 px images (random weights leave many dead there)
    noise = np.random.default_rng(1).integers(0, 256, (8, 35, 35, 3)).astype(np.float32)
    channels = np.argsort(-channel_means(small, noise).mean(axis=0))[:2].tolist()
    settings = Settings.from_options({"steps": 16, "fourier": False, "size": 35, "seed": 0})
    assert settings.image_size((227, 227)) == (35, 35)
    r = visualize(to_layer, channels, size=(227, 227), settings=settings)
    assert r.images.shape == (2, 35, 35, 3) and r.input_size == (227, 227)
    assert (r.final > r.start).all(), (r.start, r.final)
    # the reported activations are those of the returned pictures, through the same layers
    again = channel_means(small, r.images.astype(np.float32))[[0, 1], channels]
    np.testing.assert_allclose(again, r.final, rtol=0.05, atol=0.02 * float(np.abs(r.final).max()))


def test_image_size_is_decided_in_one_place():
    from convscope import config as cfg
    from convscope.analysis.standard.filter_vis import Settings

    default = Settings.from_options(None)
    assert default.size == cfg.defaults("analysis")["filter_vis"]["size"]
    assert Settings.from_options({"size": 128}).image_size((224, 224)) == (128, 128)
    assert Settings.from_options({"size": 128}).image_size((64, 64)) == (64, 64)  # never above the input
    assert Settings.from_options({"size": None}).image_size((299, 299)) == (299, 299)


def test_a_saved_and_loaded_classifier_rebuilds_too(tmp_path):
    """The analyse job cuts the model it loads from disk (augmentation on, a pooled head): same answer."""
    from convscope.analysis.flexible_input import at_side
    from convscope.analysis.split_model import cut
    from convscope.models.build import build_classifier, load_model

    built = build_classifier("alexnet", 3, input_size=96, weights="none", seed=1, augment="standard", head="pooled")
    built.save(tmp_path / "model.keras")
    fixed = cut(load_model(tmp_path / "model.keras", compile=False), "conv5").to_layer
    x = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3)).astype(np.float32)
    flexible = at_side(fixed, 64)
    assert flexible is not fixed
    np.testing.assert_allclose(np.asarray(flexible(x)), np.asarray(fixed(x)), rtol=1e-5, atol=1e-4)
    small, native = np.asarray(flexible(x[:, :64, :64])).shape, np.asarray(fixed(x)).shape
    assert small[1] < native[1] and small[2] < native[2], (small, native)


def test_a_layer_past_the_flatten_is_refused_by_name():
    """A Dense layer's input is tied to the native size: the error names the layer key, not a Keras shape error."""
    import keras

    from convscope.analysis.flexible_input import at_side

    image = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(2, 3)(image)
    model = keras.Model(image, keras.layers.Dense(4)(keras.layers.Flatten()(conv)))
    with pytest.raises(ValueError, match=r"analysis\.filter_vis\.layer"):
        at_side(model, 8)
    assert at_side(keras.Model(image, conv), 8)(np.zeros((1, 8, 8, 3), np.float32)).shape == (1, 6, 6, 2)
