"""Integrated Gradients (Sundararajan et al. 2017) and its completeness check.

attribution = (x - x') * mean over the straight path x' + alpha (x - x') of
d logit_target / d pixel, alpha at the midpoints of `steps` equal intervals, with a
black image as the baseline x'. Completeness: the attributions of an image sum to
logit(x) - logit(x'); the midpoint rule approximates the path integral, so the
residual shrinks with more steps. All path points of all images go through the one
gradients module in batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convscope.analysis.explain.gradcam import onehot_targets
from convscope.analysis.explain.saliency import input_gradients


@dataclass
class Attributions:
    values: np.ndarray  # N x H x W x 3, per pixel and colour
    score: np.ndarray  # N: logit of the target at the image
    baseline_score: np.ndarray  # N: ... at the baseline

    @property
    def map(self) -> np.ndarray:
        """N x H x W: |attribution summed over colours| (what the figures and checks use)."""
        return np.abs(self.values.sum(axis=-1)).astype(np.float32)

    def completeness_error(self) -> np.ndarray:
        """N: |sum of attributions - (score - baseline score)| relative to |score - baseline score|."""
        diff = self.score - self.baseline_score
        residual = np.abs(self.values.reshape(len(diff), -1).sum(axis=1, dtype=np.float64) - diff)
        return residual / np.maximum(np.abs(diff), 1e-6)


def _target_logits(cut, images, targets, n_classes: int, batch_size: int) -> np.ndarray:
    from keras import ops

    onehot = onehot_targets(targets, n_classes)
    out = []
    for s in range(0, len(images), batch_size):
        acts = cut.to_layer.predict(np.asarray(images[s : s + batch_size], np.float32), verbose=0)
        out.append(ops.convert_to_numpy(cut.class_score(acts, onehot[s : s + batch_size])))
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def integrated_gradients(
    cut, images, targets, n_classes: int, *, steps: int = 32, batch_size: int = 64
) -> Attributions:
    """Integrated Gradients of the target logits (cut: split_model.cut of the classifier)."""
    if steps < 1:
        raise ValueError(f"Integrated Gradients needs at least 1 step, got {steps} (analysis.methods.ig_steps)")
    images = np.asarray(images, np.float32)
    targets = np.asarray(targets, np.int64)
    baseline = np.zeros_like(images)
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps
    total = np.zeros(images.shape, np.float64)
    # Chunks of whole images: each image's path points stay together, memory bounded.
    per_chunk = max(1, batch_size // steps)
    for s in range(0, len(images), per_chunk):
        x, x0 = images[s : s + per_chunk], baseline[s : s + per_chunk]
        path = x0[:, None] + alphas[None, :, None, None, None] * (x - x0)[:, None]
        grads = input_gradients(
            cut,
            path.reshape(-1, *x.shape[1:]),
            np.repeat(targets[s : s + per_chunk], steps),
            n_classes,
            batch_size=batch_size,
        )
        total[s : s + len(x)] = grads.reshape(len(x), steps, *x.shape[1:]).mean(axis=1) * (x - x0)
    return Attributions(
        values=total.astype(np.float32),
        score=_target_logits(cut, images, targets, n_classes, batch_size),
        baseline_score=_target_logits(cut, baseline, targets, n_classes, batch_size),
    )
