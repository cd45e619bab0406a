"""Layers chosen by what they can show: at small inputs, maps large enough to read."""

from __future__ import annotations

import pytest

from convscope import backbones as registry


def alexnet(size):
    from convscope.models.build import build_classifier

    return build_classifier("alexnet", 4, input_size=size, weights="none")


@pytest.mark.parametrize(
    "size, min_side, gradcam, activations",
    [
        # conv1 14x14, conv2 6x6, conv5 2x2 at 64 px: conv5 would be four blocks.
        (64, 7, ("conv1", 14), [("conv1", 14), ("norm1", 14)]),
        (64, 6, ("conv2", 6), [("conv1", 14), ("pool1", 6), ("norm2", 6)]),
        # 128 px: conv2 14x14 is the deepest block end of at least 7x7 (conv5 is 6x6).
        (128, 7, ("conv2", 14), [("conv1", 30), ("pool1", 14), ("norm2", 14)]),
        # 32 px: nothing reaches 7x7, so the largest maps (conv1, 6x6) are used.
        (32, 7, ("conv1", 6), [("conv1", 6), ("norm1", 6)]),
    ],
)
def test_alexnet_layers_at_small_inputs(size, min_side, gradcam, activations):
    from convscope.analysis.explain import layer_choice
    from convscope.models.build import base_of

    model = alexnet(size)
    chosen = layer_choice.gradcam_layer(model, registry.get("alexnet"), min_side)
    assert (chosen.name, chosen.height, chosen.width) == (gradcam[0], gradcam[1], gradcam[1])
    layers = layer_choice.activation_layers(base_of(model), [0.1, 0.5, 0.9], min_side)
    assert [(m.name, m.height) for m in layers] == activations
    assert all(m.height == m.width for m in layers)


def test_named_layers_are_used_as_given_even_when_small():
    from convscope.analysis.explain import layer_choice
    from convscope.models.build import base_of

    base = base_of(alexnet(64))
    layers = layer_choice.activation_layers(base, ["conv5", 0.0], 7)
    assert [(m.name, m.height) for m in layers] == [("conv5", 2), ("conv1", 14)]
    with pytest.raises(ValueError, match=r"analysis\.activations\.layers: 'conv9'"):
        layer_choice.activation_layers(base, ["conv9"], 7)


def test_mobilenetv2_at_64_px_uses_an_8x8_block_for_gradcam():
    from convscope.analysis.explain import layer_choice
    from convscope.models.build import build_classifier

    model = build_classifier("mobilenetv2", 3, input_size=64, weights="none")
    chosen = layer_choice.gradcam_layer(model, registry.get("mobilenetv2"), 7)
    # out_relu (last_conv) is 2x2 at 64 px; block_5_add is the deepest block end at 8x8.
    assert chosen.label() == "block_5_add (8x8 maps)"
    assert layer_choice.describe(model, "out_relu").side == 2


def test_vgg16_gradcam_skips_block5_pool_when_it_is_readable():
    """block5_pool is a block end past last_conv: the same evidence as block5_conv3 on half
    the grid. Once both are readable (224 px: 14x14 and 7x7; here 64 px with min side 2:
    4x4 and 2x2) the choice is block5_conv3, as in the Grad-CAM paper."""
    from convscope.analysis.explain import layer_choice
    from convscope.models.build import build_classifier

    model = build_classifier("vgg16", 3, input_size=64, weights="none")
    assert layer_choice.describe(model, "block5_pool").side == 2
    chosen, why = layer_choice.gradcam_choice(model, registry.get("vgg16"), 2)
    assert chosen.label() == "block5_conv3 (4x4 maps)"
    assert "last_conv" in why
    # min side 4: block5_conv3 is still readable; 8: only block3_pool and shallower are.
    assert layer_choice.gradcam_layer(model, registry.get("vgg16"), 4).name == "block5_conv3"
    assert layer_choice.gradcam_layer(model, registry.get("vgg16"), 8).label() == "block3_pool (8x8 maps)"
