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
EPOCHS = 8  # measured: digits at 8% moved labels, recall@k 0.95 (raw-pixel logistic regression 0.83)
BATCH = 64


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
        model.fit(images[train], labels[train], epochs=EPOCHS, batch_size=BATCH, verbose=0)
        probs[held] = model.predict(images[held], batch_size=256, verbose=0)
    return probs
