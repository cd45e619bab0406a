"""The backbone registry: the one place that knows each backbone's facts.

Importing this module must stay cheap (no Keras): the data stages and the
Snakefile ask it for input sizes. Model construction lives in convscope.models.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backbone:
    name: str
    input_size: int  # native square input side in pixels
    min_size: int  # smallest side the architecture accepts (keras.applications' own check)
    # How pixels are scaled before the network, as keras.applications names it:
    # "caffe" (BGR, mean subtraction), "tf" ([-1, 1]), "torch" (ImageNet mean/std),
    # or "raw" (the network rescales itself, e.g. EfficientNet).
    preprocess: str
    # Layer names that close each tunable block, bottom to top: tune_depth=k
    # unfreezes the last k blocks. Each must be a cut point of the layer graph (every
    # other layer strictly before or after it); tests/test_models.py checks that, and
    # that these and last_conv are layers of the real keras.applications models.
    blocks: tuple[str, ...]
    last_conv: str  # layer whose activations Grad-CAM uses
    keras_app: str | None = None  # keras.applications constructor, None = ours


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            "alexnet",
            227,
            32,  # ours degrades gracefully (convscope.models.alexnet); 32 like the others
            "caffe",
            ("conv1", "conv2", "conv3", "conv4", "conv5"),
            "conv5",
        ),
        Backbone(
            "vgg16",
            224,
            32,
            "caffe",
            ("block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool"),
            "block5_conv3",
            "VGG16",
        ),
        Backbone(
            "resnet50",
            224,
            32,
            "caffe",
            (
                "pool1_pool",
                "conv2_block3_out",
                "conv3_block4_out",
                "conv4_block6_out",
                "conv5_block3_out",
            ),
            "conv5_block3_out",
            "ResNet50",
        ),
        Backbone(
            "inceptionv3",
            299,
            75,
            "tf",
            tuple(f"mixed{i}" for i in range(11)),
            "mixed10",
            "InceptionV3",
        ),
        Backbone(
            "mobilenetv2",
            224,
            32,
            "tf",
            (
                "block_2_add",
                "block_5_add",
                "block_9_add",
                "block_12_add",
                "block_15_add",
                "out_relu",
            ),
            "out_relu",
            "MobileNetV2",
        ),
        Backbone(
            "efficientnetb0",
            224,
            32,
            "raw",
            (
                "block2b_add",
                "block3b_add",
                "block4c_add",
                "block5c_add",
                "block6d_add",
                "top_activation",
            ),
            "top_activation",
            "EfficientNetB0",
        ),
    )
}


def get(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise KeyError(
            f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}"
        ) from None


def input_size(name: str, options: dict | None = None) -> int:
    """The input side a configured backbone trains at: config override or native."""
    override = (options or {}).get("input_size")
    return int(override) if override else get(name).input_size
