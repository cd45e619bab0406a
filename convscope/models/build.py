"""Classifier construction, tuning depth and precision: the model contract.

    image (float32 holding 0..255 values; uint8 arrays are cast on entry)
      -> augment     Sequential of keras Random* layers (identity at inference)
      -> preprocess  the backbone's preprocess_input, in keras.ops, on the device
      -> base        nested functional keras.Model, the backbone without top
                     (layer names as in convscope.backbones); with the "fc" head
                     it keeps the pretrained fc stack up to fc7 (AlexNet) / fc2 (VGG16)
      -> pool        GlobalAveragePooling2D (the "pooled" head only)
      -> dropout     (with the fc head: where the original had drop7)
      -> head        Dense(num_classes, softmax), float32 even under mixed precision

Importing this module registers the custom layers (Preprocess, the AlexNet
LRN), which keras.saving.load_model needs; `load_model` below does that for you.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
from dataclasses import dataclass

import keras
from keras import layers, ops

from convscope import backbones as registry
from convscope import keras_compat
from convscope.models import weights as weights_lib
from convscope.models.alexnet import AlexNet, Top

log = logging.getLogger(__name__)

AUGMENT_PRESETS = ("none", "light", "standard")
PREPROCESS_MODES = ("caffe", "tf", "torch", "raw")

# keras.applications.imagenet_utils constants (ImageNet statistics).
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="convscope")
class Preprocess(layers.Layer):
    """keras.applications' preprocess_input as a layer, so it runs on the device.

    caffe: RGB -> BGR, minus the ImageNet mean per channel (VGG16, ResNet50, AlexNet)
    tf:    x / 127.5 - 1                                   (InceptionV3, MobileNetV2)
    torch: x / 255, minus mean, over std per channel
    raw:   unchanged (EfficientNet rescales inside the network)
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ValueError(f"Preprocess mode {mode!r} unknown; allowed: {PREPROCESS_MODES}")
        self.mode = mode

    def call(self, inputs):
        return preprocess(inputs, self.mode, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def preprocess(inputs, mode: str, dtype: str = "float32"):
    """Preprocess's computation in keras.ops alone.

    On a symbolic tensor it adds plain Keras operations to a functional graph,
    which a saved model holds without this class (convscope.export).
    """
    x = ops.cast(inputs, dtype)
    if mode == "caffe":
        return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        mean = ops.convert_to_tensor(_TORCH_MEAN, dtype=x.dtype)
        std = ops.convert_to_tensor(_TORCH_STD, dtype=x.dtype)
        return (x / 255.0 - mean) / std
    return x


def augmentation(preset: str, seed: int | None = None) -> keras.Sequential:
    """The "augment" block. Random layers act only when training=True.

    Layers run in float32 whatever the global policy: they see 0..255 pixel
    values, which bfloat16 cannot hold exactly.
    """
    preset = "none" if preset is None else preset
    if preset not in AUGMENT_PRESETS:
        raise ValueError(f"config key train.augment: {preset!r} is not a preset; allowed values: {AUGMENT_PRESETS}")
    s = (lambda k: None) if seed is None else (lambda k: seed + k)
    stack: list = [layers.Identity(dtype="float32")]
    if preset in ("light", "standard"):
        # Horizontal only: vertical flips change what many classes look like.
        stack = [layers.RandomFlip("horizontal", seed=s(1), dtype="float32")]
    if preset == "standard":
        stack += [
            layers.RandomRotation(0.05, fill_mode="reflect", seed=s(2), dtype="float32"),
            layers.RandomZoom(0.1, fill_mode="reflect", seed=s(3), dtype="float32"),
            layers.RandomContrast(0.2, value_range=(0, 255), seed=s(4), dtype="float32"),
        ]
    return keras.Sequential(stack, name="augment")


def build_base(
    backbone: str,
    input_size: int | None = None,
    weights: str = "imagenet",
    *,
    weights_sha256: str | None = None,
    head: str = "pooled",
    dropout: float = 0.5,
) -> keras.Model:
    """The backbone as a functional model named "base", weights loaded.

    head "pooled": the convolutional base (no top). head "fc": the base plus the
    pretrained fc stack up to its last hidden layer (AlexNet fc7, VGG16 fc2), with
    dropout at `dropout` after each fc layer but the last (the classifier adds that one).
    weights: "imagenet" (Keras download cache; AlexNet: bvlc_alexnet.npy, fetched
    into that cache on first use), "none" (random init), or a path (.weights.h5/.h5 of a base, a .keras
    model whose "base" or own layers are copied by name, or an AlexNet .npy).
    weights_sha256: optional pin of AlexNet's .npy file.
    """
    spec = registry.get(backbone)
    size = int(input_size or spec.input_size)
    if size < spec.min_size:
        raise ValueError(
            f"config key backbones.{backbone}.input_size: {size} is below {backbone}'s minimum of {spec.min_size}"
        )
    problem = registry.head_problem(backbone, {"head": head, "input_size": size})
    if problem:
        raise ValueError(problem)
    shape = (size, size, 3)
    weights = "none" if weights is None else str(weights)
    top = head == "fc"
    if spec.keras_app is None:  # ours: AlexNet, ImageNet weights from bvlc_alexnet.npy
        base = AlexNet(include_top=top, input_shape=shape, name="base", top=Top(dropout=float(dropout), fc8=False))
        if weights == "imagenet":
            path = weights_lib.alexnet_imagenet_path()
            weights_lib.load_alexnet_npy(base, path, sha256=weights_sha256)
    else:
        if weights == "imagenet":
            app = weights_lib.imagenet_app(backbone, spec.keras_app, shape, include_top=top)
        else:
            app = getattr(keras.applications, spec.keras_app)(include_top=top, weights=None, input_shape=shape)
        # Re-wrapped to be named "base" (and, for fc, to end below the 1000-class layer);
        # the layers are the application's own.
        out = _fc_stack(app, spec.fc_stack, float(dropout)) if top else app.outputs[0]
        base = keras.Model(app.inputs[0], out, name="base")
    if weights not in ("imagenet", "none"):
        weights_lib.load_weights_file(base, weights, backbone, sha256=weights_sha256)
    return base


def _fc_stack(app: keras.Model, names: tuple[str, ...], dropout: float):
    """The application's fc layers re-applied from its flatten, dropout after each but the last."""
    x = app.get_layer(names[0]).input  # the application's flatten output
    for i, name in enumerate(names):
        x = app.get_layer(name)(x)
        if i < len(names) - 1:
            x = layers.Dropout(dropout, name=f"drop_{name}")(x)
    return x


@dataclass(frozen=True)
class BuildOptions:
    """build_classifier's keyword options beyond the input size and seed (what a run's config sets)."""

    weights: str = "imagenet"  # "imagenet", "none", or a weights file (convscope.models.weights)
    dropout: float = 0.0
    augment: str = "none"
    weights_sha256: str | None = None  # the weights file's expected digest
    head: str | None = None


def build_classifier(
    backbone: str, num_classes: int, *, input_size: int | None = None, seed: int | None = None, **options
) -> keras.Model:
    """image -> augment -> preprocess -> base -> [pool] -> dropout -> head (see module doc).

    options: the fields of BuildOptions (weights, dropout, augment, weights_sha256, head).
    head: "pooled" (GlobalAveragePooling2D "pool" before dropout and the new Dense),
    "fc" (the base keeps the pretrained fc stack; only the last layer is new), or
    None / "auto" (the registry's choice: fc for AlexNet/VGG16 at native size).
    `seed` seeds Python, NumPy and the backend (keras.utils.set_random_seed), so
    the same seed gives the same initial head and the same augmentation stream.
    The whole base is trainable on return; call set_tune_depth, then compile.
    """
    if num_classes < 2:
        raise ValueError(f"build_classifier: need at least 2 classes, got {num_classes}")
    opts = _build_options(options)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    spec = registry.get(backbone)
    size = int(input_size or spec.input_size)
    kind = registry.head(backbone, {"head": opts.head or "auto", "input_size": size})
    base = build_base(backbone, size, opts.weights, weights_sha256=opts.weights_sha256, head=kind, dropout=opts.dropout)
    inputs = keras.Input(shape=(size, size, 3), name="image", dtype="float32")
    x = augmentation(opts.augment, seed)(inputs)
    x = Preprocess(spec.preprocess, name="preprocess", dtype="float32")(x)
    x = base(x)
    if kind == "pooled":
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(float(opts.dropout), seed=seed, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="head")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_classifier")


def _build_options(options: dict) -> BuildOptions:
    known = {f.name for f in dataclasses.fields(BuildOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"build_classifier: unknown option(s) {unknown}; allowed: {sorted(known)}")
    return BuildOptions(**options)


def head_kind(model: keras.Model) -> str:
    """ "fc" when the classifier kept its pretrained fc stack, else "pooled"."""
    return "pooled" if any(layer.name == "pool" for layer in model.layers) else "fc"


def embedding_layer(model: keras.Model, backbone: str) -> str:
    """The name of the layer whose output is the classifier's embedding (registry.embedding_layer)."""
    return registry.embedding_layer(backbone, head_kind(model))


def embedding_tensor(model: keras.Model):
    """The embedding layer's output as the head reads it: "pool", or with the fc head the base's output
    (fc7 / fc2), after "dropout" (identity at inference; the base's own .output would be its inner graph's).
    """
    return model.get_layer("head").input


def embedder(model: keras.Model, backbone: str) -> keras.Model:
    """image -> the embedding of `embedding_layer`: what the new last layer reads (at inference)."""
    return keras.Model(model.inputs, embedding_tensor(model), name=f"{backbone}_embedder")


def base_of(model: keras.Model) -> keras.Model:
    """The nested backbone ("base") of a classifier from build_classifier."""
    try:
        return model.get_layer("base")
    except ValueError:
        raise ValueError(f"model {model.name!r} has no layer named 'base'; was it built by build_classifier?") from None


def block_layers(base: keras.Model, backbone: str) -> list[list]:
    """The base's layers split into tunable blocks, bottom to top.

    Block i ends at the registry's tune_blocks[i] (inclusive: the conv blocks, then the
    kept fc layers when the base has them); layers after the last
    boundary belong to the last block. Relies on base.layers being in
    topological order and each boundary being a cut point of the graph
    (tests/test_models.py checks both for every backbone).
    """
    names = [layer.name for layer in base.layers]
    out, start = [], 0
    fc_stack = registry.get(backbone).fc_stack
    boundaries = registry.tune_blocks(backbone, "fc" if fc_stack and fc_stack[-1] in names else "pooled")
    for i, boundary in enumerate(boundaries):
        if boundary not in names:
            raise ValueError(
                f"convscope.backbones: block boundary {boundary!r} of {backbone} is not a layer of the base"
            )
        end = names.index(boundary) + 1
        if i == len(boundaries) - 1:
            end = len(names)
        out.append(base.layers[start:end])
        start = end
    return out


def set_tune_depth(model: keras.Model, backbone: str, depth) -> keras.Model:
    """Freeze the base below the last `depth` blocks; the head always trains.

    depth: 0 = head only, k = the last k blocks of the registry's `tune_blocks`,
    "all" = everything. Frozen BatchNormalization layers run in inference mode
    (Keras 3 does this for any BN layer with trainable=False), so their moving
    statistics stay as loaded. Re-compile the model after calling this.
    """
    base = base_of(model)
    blocks = block_layers(base, backbone)
    if depth == "all":
        k = len(blocks)
    else:
        try:
            k = int(depth)
        except (TypeError, ValueError):
            k = -1
        if not 0 <= k <= len(blocks) or isinstance(depth, bool):
            raise ValueError(
                f"config key train.tune_depth: {depth!r} is not valid for {backbone}; "
                f"use 0 (head only) to {len(blocks)} (its number of blocks) or 'all'"
            )
    _set_trainable(model, True)
    for block in blocks[: len(blocks) - k]:
        for layer in block:
            _set_trainable(layer, False)
    if k == 0:
        _set_trainable(base, False)
    return model


def _set_trainable(layer, value: bool) -> None:
    # Not `layer.trainable = value`: on the TensorFlow backend Keras 3.15 skips that
    # assignment when the flag already equals `value` (KerasAutoTrackable.__setattr__
    # short-circuits `x.a = x.a`), so sublayers frozen earlier would stay frozen.
    # Call the property setter itself, recursively.
    type(layer).trainable.fset(layer, bool(value))
    for sub in keras_compat.sublayers(layer):
        _set_trainable(sub, value)


def load_model(path, compile: bool = True) -> keras.Model:
    """keras.saving.load_model with convscope's custom layers registered."""
    return keras.saving.load_model(str(path), compile=compile)


def _gpu_has_bfloat16() -> bool:
    """True when every NVIDIA GPU is compute capability >= 8.0 (Ampere+).

    Asked of nvidia-smi so this stays backend-agnostic; without nvidia-smi
    (other vendors) bfloat16 is assumed.
    """
    smi = shutil.which("nvidia-smi")
    if not smi:
        return True
    try:
        out = subprocess.run(
            [smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.split()
        return all(float(c) >= 8.0 for c in out) if out else True
    except (OSError, subprocess.SubprocessError, ValueError):
        return True


def _has_gpu() -> bool:
    try:
        return bool(keras.distribution.list_devices("gpu"))
    except RuntimeError:  # JAX raises when it has no GPU platform at all
        return False


def configure_precision(policy: str = "auto") -> str:
    """Set the global Keras dtype policy; returns its name.

    "auto": mixed_bfloat16 on GPUs that have it (Ampere and newer),
    mixed_float16 on older GPUs (Keras wraps the optimizer in a
    LossScaleOptimizer at compile), float32 without a GPU. Call it before
    build_classifier: layers take the policy in force when they are created.
    """
    if policy == "auto":
        if _has_gpu():
            policy = "mixed_bfloat16" if _gpu_has_bfloat16() else "mixed_float16"
        else:
            policy = "float32"
    keras.config.set_dtype_policy(policy)
    log.info("dtype policy: %s", policy)
    return policy
