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
    # The pretrained fully connected layers below the 1000-class output, bottom to
    # top (AlexNet fc6, fc7; VGG16 fc1, fc2). The "fc" head keeps them (each followed
    # by dropout, as in the original networks) and replaces only the last layer;
    # they fit only at the native input size. Empty: the network has no such stack.
    fc_stack: tuple[str, ...] = ()


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
            fc_stack=("fc6", "fc7"),
        ),
        Backbone(
            "vgg16",
            224,
            32,
            "caffe",
            ("block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool"),
            "block5_conv3",
            "VGG16",
            fc_stack=("fc1", "fc2"),
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
        raise KeyError(f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}") from None


def input_size(name: str, options: dict | None = None) -> int:
    """The input side a configured backbone trains at: config override or native."""
    override = (options or {}).get("input_size")
    return int(override) if override else get(name).input_size


# ---- heads ------------------------------------------------------------------
#   fc      keep the pretrained fc stack, replace only the last layer (AlexNet's fc8)
#   pooled  global average pooling of the last conv block + a new Dense layer
HEADS = ("auto", "fc", "pooled")


def head_problem(name: str, options: dict | None = None) -> str | None:
    """Why `backbones.<name>.head` cannot be what options ask, or None when it can."""
    spec, options = get(name), options or {}
    if options.get("head", "auto") != "fc":
        return None
    key = f"config key backbones.{name}.head"
    if not spec.fc_stack:
        return f"{key}: fc, but {name} has no pretrained fully connected layers to keep; use pooled or auto"
    size = input_size(name, options)
    if size != spec.input_size:
        return (
            f"{key}: fc keeps the pretrained {', '.join(spec.fc_stack)}, which fit only at {name}'s native input "
            f"size {spec.input_size}, but backbones.{name}.input_size is {size}; use head: pooled (or auto), or "
            f"remove input_size"
        )
    return None


def head(name: str, options: dict | None = None) -> str:
    """The head a configured backbone gets: fc or pooled ("auto": fc where possible)."""
    options = options or {}
    problem = head_problem(name, options)
    if problem:
        raise ValueError(problem)
    chosen = options.get("head", "auto")
    if chosen == "auto":
        spec = get(name)
        return "fc" if spec.fc_stack and input_size(name, options) == spec.input_size else "pooled"
    return chosen


def tune_blocks(name: str, head_kind: str = "pooled") -> tuple[str, ...]:
    """The tunable blocks, bottom to top: the conv blocks, then (fc head) the kept fc layers.

    tune_depth k trains the top k of these (0 = the new last layer only), so with the
    fc head AlexNet's depths read fc8 (0), fc7 (1), fc6 (2), conv5 (3), ...
    """
    spec = get(name)
    return spec.blocks + (spec.fc_stack if head_kind == "fc" else ())


def embedding_layer(name: str, head_kind: str = "pooled") -> str:
    """The layer whose output is a run's embedding (what the new last layer reads).

    The features strategy, t-SNE and every other "penultimate layer" analysis use
    this one layer: fc7 / fc2 with the fc head, the pooled last conv ("pool") otherwise.
    """
    spec = get(name)
    return spec.fc_stack[-1] if head_kind == "fc" else "pool"
