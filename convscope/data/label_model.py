"""Out-of-sample class probabilities from a small convnet trained k-fold on the images themselves.

cleanlab ranks label errors by how little out-of-sample probability a model gives
each image's own label. With a pretrained or ImageNet base, logistic regression on
its frozen embeddings gives good probabilities (convscope.data.audit). Without one
(`weights: none`, or no weights reachable) the embeddings of a random-weight base
rank planted errors no better than raw pixels, so the probabilities come from a
model trained on the data, as cleanlab recommends: a small convnet per fold,
trained on the other folds' prepared images (shrunk to at most SIDE px) and
asked about the held-out fold.
"""

from __future__ import annotations

import numpy as np

SIDE = 32  # the convnet sees the prepared images at most this large: a few seconds per fold on a CPU
EPOCHS = 8
# Batches of at most MAX_BATCH, but at least STEPS_PER_EPOCH of them: a few hundred images in
# batches of 64 made 3 steps an epoch, 24 in all, and left the net half-trained. Smaller batches
# give a small set enough steps for the same 8 passes (more epochs instead cost Keras's
# per-epoch overhead: 2.5x the time on 48 images). Measured on digit folders of 60 scans a
# class, 8% moved, over 10 image orders, recall@k at batch 64 -> now: digits 3/5/8
# 0.80-0.93 -> 0.93-1.00; 1/4/7 (not tuned on) 0.87-1.00 -> 0.93-1.00; 2/6/9 1.00 -> 1.00.
MAX_BATCH, MIN_BATCH, STEPS_PER_EPOCH = 64, 8, 12


def batch_size(train_images: int) -> int:
    """The batch that makes at least STEPS_PER_EPOCH steps an epoch, within [MIN_BATCH, MAX_BATCH]."""
    return int(min(MAX_BATCH, max(MIN_BATCH, train_images // STEPS_PER_EPOCH)))


def _model(shape: tuple[int, ...], classes: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    side = min(SIDE, shape[0])
    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Resizing(side, side),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )


def out_of_sample_probs(images: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """k-fold (stratified) softmax probabilities of the small convnet; images (n, h, w, c) uint8."""
    from sklearn.model_selection import StratifiedKFold

    classes = int(labels.max()) + 1
    k = max(2, min(folds, int(np.bincount(labels).min())))
    probs = np.zeros((len(images), classes), np.float32)
    for fold, (train, held) in enumerate(StratifiedKFold(k, shuffle=True, random_state=seed).split(images, labels)):
        model = _model(images.shape[1:], classes, seed + fold)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(images[train], labels[train], epochs=EPOCHS, batch_size=batch_size(len(train)), verbose=0)
        probs[held] = model.predict(images[held], batch_size=256, verbose=0)
    return probs
