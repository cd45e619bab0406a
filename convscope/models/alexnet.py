"""AlexNet (Krizhevsky et al. 2012, the BVLC Caffe definition) in Keras 3.

keras.applications has no AlexNet, so this is ours. It follows the original
architecture so that the widely circulated `bvlc_alexnet.npy` weights fit
(see convscope.models.weights.load_alexnet_npy):

    conv1 96x11x11/4 valid, relu -> norm1 (LRN) -> pool1 3x3/2
    conv2 256x5x5 same, groups=2, relu -> norm2 (LRN) -> pool2 3x3/2
    conv3 384x3x3 same, relu
    conv4 384x3x3 same, groups=2, relu
    conv5 256x3x3 same, groups=2, relu -> pool5 3x3/2
    [include_top] flatten -> fc6 4096 relu -> drop6 -> fc7 4096 relu -> drop7 -> fc8
                  (fc8=False: up to fc7, the base of convscope's "fc" head)

At 227 px pool5 is 6x6x256 (9216 inputs to fc6, as in Caffe). Reduced inputs
(the demo trains at 64 px) shrink the feature maps; a pooling window that no
longer fits (side < 3) switches to "same" padding instead of failing, so the
base still ends at pool5 and the classifier's global pooling takes it from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers, ops

# Caffe's `lrn` parameters of bvlc_alexnet (local_size 5 = 2 * depth_radius + 1).
LRN_DEFAULTS = {"depth_radius": 2, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}


@keras.saving.register_keras_serializable(package="convscope")
class LocalResponseNormalization(layers.Layer):
    """Cross-channel LRN with Caffe's convention.

    b_c = a_c / (bias + alpha / n * sum_{c' = c-r}^{c+r} a_c'^2) ** beta,  n = 2r + 1

    Caffe divides alpha by the window size n; TensorFlow's
    tf.nn.local_response_normalization does not (its alpha would be 1e-4 / 5 =
    2e-5 for the same layer). Channels beyond the edges count as zero.
    """

    def __init__(self, depth_radius=2, alpha=1e-4, beta=0.75, bias=1.0, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = int(depth_radius)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.bias = float(bias)

    def call(self, inputs):
        return lrn(inputs, self.depth_radius, self.alpha, self.beta, self.bias)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "alpha": self.alpha,
            "beta": self.beta,
            "bias": self.bias,
        }


def lrn(inputs, depth_radius: int = 2, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0):
    """LocalResponseNormalization's computation in keras.ops alone.

    On a symbolic tensor it adds plain Keras operations to a functional graph,
    which a saved model holds without this class (convscope.export).
    """
    # float32 even under a mixed policy: sums of squared activations overflow
    # float16 and lose too much precision in bfloat16.
    x = ops.cast(inputs, "float32")
    r = int(depth_radius)
    n = 2 * r + 1
    channels = x.shape[-1]
    squared = ops.pad(ops.square(x), [[0, 0]] * (len(x.shape) - 1) + [[r, r]])
    window = squared[..., 0:channels]
    for i in range(1, n):
        window = window + squared[..., i : i + channels]
    scale = ops.power(float(bias) + (float(alpha) / n) * window, float(beta))
    return ops.cast(x / scale, inputs.dtype)


def _pool(x, name):
    side = min(d for d in x.shape[1:3] if d is not None) if all(x.shape[1:3]) else None
    padding = "valid" if side is None or side >= 3 else "same"
    return layers.MaxPooling2D(pool_size=3, strides=2, padding=padding, name=name)(x)


@dataclass(frozen=True)
class Top:
    """AlexNet's fully connected top (used when include_top)."""

    fc_units: int = 4096  # the width of fc6/fc7 (4096 in AlexNet; smaller only for tests)
    dropout: float = 0.5  # the rate of drop6/drop7 (0.5 in AlexNet)
    fc8: bool = True  # False: end at fc7's ReLU (the fc head's base: the classifier adds drop7 and a new fc8)


def AlexNet(
    include_top: bool = True,
    input_shape: tuple = (227, 227, 3),
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "alexnet",
    top: Top = Top(),
) -> keras.Model:
    """The AlexNet functional model (keras.applications' signature); layer names match bvlc_alexnet.npy keys."""
    if min(input_shape[:2]) < 11:
        raise ValueError(f"AlexNet needs an input side of at least 11 px (conv1 is 11x11), got {input_shape}")
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Conv2D(96, 11, strides=4, padding="valid", activation="relu", name="conv1")(inputs)
    x = LocalResponseNormalization(**LRN_DEFAULTS, name="norm1")(x)
    x = _pool(x, "pool1")
    x = layers.Conv2D(256, 5, padding="same", groups=2, activation="relu", name="conv2")(x)
    x = LocalResponseNormalization(**LRN_DEFAULTS, name="norm2")(x)
    x = _pool(x, "pool2")
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", groups=2, activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", groups=2, activation="relu", name="conv5")(x)
    x = _pool(x, "pool5")
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(top.fc_units, activation="relu", name="fc6")(x)
        x = layers.Dropout(top.dropout, name="drop6")(x)
        x = layers.Dense(top.fc_units, activation="relu", name="fc7")(x)
        if top.fc8:
            x = layers.Dropout(top.dropout, name="drop7")(x)
            x = layers.Dense(classes, activation=classifier_activation, name="fc8")(x)
    return keras.Model(inputs, x, name=name)
