"""Saliency maps: vanilla input gradients (Simonyan et al. 2014) and SmoothGrad
(Smilkov et al. 2017, the mean map over noisy copies of the image).

A pixel's saliency is max over colour channels of |d logit_target / d pixel|.
Noisy copies of all images go through the network as batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convscope.analysis.explain.gradcam import batched_gradients, onehot_targets


def input_gradients(cut, images, targets, n_classes: int, *, batch_size: int = 32) -> np.ndarray:
    """d logit_target / d image for each image (N x H x W x 3, float32)."""
    return batched_gradients(
        cut.input_score, images, onehot_targets(targets, n_classes), batch_size, variables=cut.variables
    )


def saliency(cut, images, targets, n_classes: int, *, batch_size: int = 32) -> np.ndarray:
    """Vanilla gradient saliency, N x H x W."""
    return np.abs(input_gradients(cut, images, targets, n_classes, batch_size=batch_size)).max(axis=-1)


@dataclass(frozen=True)
class SmoothGrad:
    """Config analysis.saliency: noisy copies per image, their noise (fraction of 255), the seed."""

    samples: int  # analysis.saliency.smoothgrad_samples
    noise: float  # analysis.saliency.smoothgrad_noise
    seed: int = 0


def smoothgrad(cut, images, targets, n_classes: int, settings: SmoothGrad, *, batch_size: int = 32) -> np.ndarray:
    """SmoothGrad saliency, N x H x W: mean over `settings.samples` copies with Gaussian noise of
    standard deviation noise * 255 (the pixel range), the copies evaluated in batches."""
    samples, noise, seed = settings.samples, settings.noise, settings.seed
    if samples < 1:
        raise ValueError(f"SmoothGrad needs at least 1 sample, got {samples} (analysis.saliency.smoothgrad_samples)")
    images = np.asarray(images, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    rng = np.random.default_rng(seed)
    total = np.zeros(images.shape[:3], dtype=np.float64)
    # Chunks of whole images keep each image's copies together and memory bounded.
    per_chunk = max(1, batch_size // samples)
    for s in range(0, len(images), per_chunk):
        chunk = images[s : s + per_chunk]
        copies = np.repeat(chunk, samples, axis=0)
        copies = copies + rng.normal(0.0, noise * 255.0, copies.shape).astype(np.float32)
        grads = input_gradients(
            cut, copies, np.repeat(targets[s : s + per_chunk], samples), n_classes, batch_size=batch_size
        )
        maps = np.abs(grads).max(axis=-1).reshape(len(chunk), samples, *chunk.shape[1:3])
        total[s : s + len(chunk)] = maps.mean(axis=1)
    return total.astype(np.float32)
