"""Shapes drawn on clutter, and the small CNN that learns them: what tests/test_pointing.py
and tests/test_trust.py train and explain.

Seeds: `train_shapes_cnn(seed)` draws its training images, its test images and the
network's initial weights from `seed`, so bench/seed_robustness.py can run the same
recipe over seeds 0-9 and numeric settings; each test uses one seed.

The images are drawn here, vectorised in numpy (the demo's convscope.data.synthetic draws
one PIL image at a time, too slow for the thousands a from-scratch CNN needs in a test):
a smooth random colour field, thin random lines, one disk / square / triangle of random
colour, size and place, pixel noise. The class is the shape, so the network must find it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SIZE = 32
SHAPES = ("disk", "square", "triangle")
# The training recipe (bench/seed_robustness.py, 2 cores): 4 epochs at 700 images per class and
# a constant learning rate reached a median test accuracy of 0.44 over seeds 0-9, and
# 0.47-0.74 on validation as the epochs went by (over-fitting: training accuracy 0.94).
# Three times the images and a cosine decay of the rate to 0 learn clearly on every seed.
TRAIN_PER_CLASS = 2000
TEST_PER_CLASS = 40
EPOCHS = 4
LEARNING_RATE = 3e-3
BATCH_SIZE = 32


def shapes_on_clutter(per_class: int, seed: int, size: int = SIZE):
    """(uint8 images N x size x size x 3, labels N, boxes N x 4 as x0, y0, x1, y1 pixel edges)."""
    rng = np.random.default_rng(seed)
    k = len(SHAPES)
    n = per_class * k
    labels = np.repeat(np.arange(k), per_class)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    # background: a 3x3 grid of random colours, bilinearly interpolated
    coarse = rng.uniform(40, 215, (n, 3, 3, 3))
    pos = np.linspace(0, 2, size)
    i0 = np.minimum(pos.astype(int), 1)
    f = (pos - i0)[None, :, None, None]
    rows = coarse[:, i0] * (1 - f) + coarse[:, i0 + 1] * f
    f = (pos - i0)[None, None, :, None]
    img = rows[:, :, i0] * (1 - f) + rows[:, :, i0 + 1] * f
    # clutter: two thin random line segments per image
    for _ in range(2):
        a, b = rng.uniform(0, size, (2, n, 2, 1, 1))
        d = b - a
        t = ((xx - a[:, 0]) * d[:, 0] + (yy - a[:, 1]) * d[:, 1]) / np.maximum((d**2).sum(axis=1), 1e-6)
        t = np.clip(t, 0, 1)
        dist = np.hypot(xx - a[:, 0] - t * d[:, 0], yy - a[:, 1] - t * d[:, 1])
        img = np.where((dist < 0.7)[..., None], rng.uniform(0, 255, (n, 1, 1, 3)), img)
    # the object
    r = rng.uniform(0.16, 0.26, n)[:, None, None] * size
    cx = rng.uniform(r[:, 0, 0] + 1, size - r[:, 0, 0] - 1)[:, None, None]
    cy = rng.uniform(r[:, 0, 0] + 1, size - r[:, 0, 0] - 1)[:, None, None]
    dx, dy = xx - cx, yy - cy
    masks = np.stack(
        [
            dx**2 + dy**2 <= r**2,
            (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r),
            (dy <= 0.8 * r) & (dy >= -r + 2 * np.abs(dx)),
        ]
    )[labels, np.arange(n)]
    img = np.where(masks[..., None], rng.uniform(0, 255, (n, 1, 1, 3)), img)
    img = img + rng.normal(0, 8, img.shape)
    cols, rows_ = masks.any(axis=1), masks.any(axis=2)
    boxes = np.stack(
        [cols.argmax(1), rows_.argmax(1), size - cols[:, ::-1].argmax(1), size - rows_[:, ::-1].argmax(1)], axis=1
    ).astype(np.float64)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), labels, boxes


def small_cnn(seed: int = 0, *, last_width: int = 48):
    """Classifier-contract shape: a nested base of three named blocks (b1_pool, b2_pool,
    last_conv: the block boundaries are cut points), GAP, Dense head; last conv at 8 x 8
    with `last_width` channels. Layer names do not change the weights a seed gives."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)

    def conv(t, c, name):
        t = layers.Conv2D(c, 3, padding="same", use_bias=False, name=f"{name}_conv")(t)
        t = layers.BatchNormalization(name=f"{name}_bn")(t)
        return layers.Activation("relu", name=name)(t)

    base_in = keras.Input((SIZE, SIZE, 3))
    h = layers.MaxPooling2D(name="b1_pool")(conv(base_in, 16, "b1"))
    h = layers.MaxPooling2D(name="b2_pool")(conv(h, 32, "b2"))
    h = conv(conv(h, last_width, "b3a"), last_width, "last_conv")
    base = keras.Model(base_in, h, name="base")
    image = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(image)
    x = layers.GlobalAveragePooling2D(name="pool")(base(x))
    model = keras.Model(image, layers.Dense(len(SHAPES), activation="softmax", name="head")(x))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@dataclass(frozen=True)
class Trained:
    model: object
    x_test: np.ndarray  # uint8 N x SIZE x SIZE x 3
    y_test: np.ndarray
    boxes: np.ndarray
    accuracy: float  # on x_test


@functools.lru_cache(maxsize=2)
def train_shapes_cnn(seed: int = 0) -> Trained:
    """The small CNN trained on shapes, the one recipe tests/test_trust.py,
    tests/test_pointing.py and bench/seed_robustness.py share (cached per process:
    one training per seed per test worker)."""
    import keras

    x_train, y_train, _ = shapes_on_clutter(TRAIN_PER_CLASS, seed=seed)
    x_test, y_test, boxes = shapes_on_clutter(TEST_PER_CLASS, seed=10_000 + seed)
    model = small_cnn(seed, last_width=64)
    steps = EPOCHS * -(-len(x_train) // BATCH_SIZE)
    # decaying to 0 lets the last epoch settle instead of jumping around a minimum
    rate = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
    model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train.astype(np.float32), y_train, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0, shuffle=True)
    accuracy = float(model.evaluate(x_test.astype(np.float32), y_test, verbose=0)[1])
    return Trained(model, x_test, y_test, boxes, accuracy)
