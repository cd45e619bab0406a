"""More class-activation maps at a conv layer, beyond Grad-CAM(++) (convscope.analysis.explain.gradcam).

With A the layer's activations (N x h x w x K) and g = d logit / d A from the one
gradients module (gradcam.layer_gradients), the gradient CAMs are closed forms:

- HiResCAM (Draelos & Carin 2020): relu(sum_k g_k * A_k), elementwise; Grad-CAM
  averages g over positions first, so the two agree when g is constant per channel.
- XGradCAM (Fu et al. 2020): channel weight sum_ab A_k g_k / sum_ab A_k.
- LayerCAM (Jiang et al. 2021): relu(sum_k relu(g_k) * A_k), elementwise.
- EigenCAM (Muhammad & Yeasin 2020): the activations projected on their first
  principal component (class-agnostic, no gradient).

Score-CAM (Wang et al. 2020) needs no gradient: each channel, upsampled and scaled to
[0, 1], masks the image; the channel's weight is the target probability of the masked
image. The masked copies of all images go through `model.predict` in batches.
"""

from __future__ import annotations

import logging

import numpy as np

from convscope.analysis.explain.gradcam import upsample
from convscope.analysis.explain.occlusion import chunk_size, predict_probs

log = logging.getLogger(__name__)


def _weighted(a, weights) -> np.ndarray:
    return np.maximum(np.einsum("nhwk,nk->nhw", a, weights), 0).astype(np.float32)


def hirescam(activations, grads) -> np.ndarray:
    a, g = np.asarray(activations, np.float64), np.asarray(grads, np.float64)
    return np.maximum((a * g).sum(axis=-1), 0).astype(np.float32)


def xgradcam(activations, grads) -> np.ndarray:
    a, g = np.asarray(activations, np.float64), np.asarray(grads, np.float64)
    total = a.sum(axis=(1, 2))
    weights = np.divide((a * g).sum(axis=(1, 2)), total, out=np.zeros_like(total), where=total != 0)
    return _weighted(a, weights)


def layercam(activations, grads) -> np.ndarray:
    a, g = np.asarray(activations, np.float64), np.asarray(grads, np.float64)
    return np.maximum((np.maximum(g, 0) * a).sum(axis=-1), 0).astype(np.float32)


def eigencam(activations) -> np.ndarray:
    """Projection of each image's (h*w) x K activations, centred over positions, on their first
    right singular vector; the sign chosen so the map correlates positively with the summed
    activation (an SVD's sign is arbitrary), then relu."""
    a = np.asarray(activations, np.float64)
    n, h, w, k = a.shape
    flat = a.reshape(n, h * w, k)
    centred = flat - flat.mean(axis=1, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = np.einsum("npk,nk->np", centred, vt[:, 0])
    strength = centred.sum(axis=-1)
    sign = np.where((proj * strength).sum(axis=1) < 0, -1.0, 1.0)
    return np.maximum(proj * sign[:, None], 0).reshape(n, h, w).astype(np.float32)


def gradient_cams(activations, grads) -> dict[str, np.ndarray]:
    """Every CAM of this module that comes from one activation/gradient pass."""
    return {
        "hirescam": hirescam(activations, grads),
        "xgradcam": xgradcam(activations, grads),
        "layercam": layercam(activations, grads),
        "eigencam": eigencam(activations),
    }


def unit_masks(activations, size) -> np.ndarray:
    """N x K x H x W: each channel upsampled to the image and min-max scaled to [0, 1] (flat = 0)."""
    a = np.asarray(activations, np.float32)
    n, h, w, k = a.shape
    up = upsample(np.moveaxis(a, -1, 1).reshape(n * k, h, w), size).reshape(n, k, *size)
    lo = up.min(axis=(2, 3), keepdims=True)
    span = up.max(axis=(2, 3), keepdims=True) - lo
    return np.divide(up - lo, span, out=np.zeros_like(up), where=span > 0)


def scorecam(model, activations, images, targets, *, channels: int | None = None, batch_size: int = 64) -> np.ndarray:
    """Score-CAM maps N x h x w: relu(sum_k p_target(image * mask_k) A_k).

    channels: use only each image's that many most active channels (mean activation),
        the others weigh 0; None = all K (one forward pass per channel and image).
    """
    a = np.asarray(activations, np.float32)
    images = np.asarray(images, np.float32)
    targets = np.asarray(targets, np.int64)
    n, k = a.shape[0], a.shape[-1]
    size = images.shape[1:3]
    use = k if channels is None else max(1, min(int(channels), k))
    chosen = np.argsort(-a.mean(axis=(1, 2)), axis=1, kind="stable")[:, :use]  # N x use
    masks = unit_masks(np.take_along_axis(a, chosen[:, None, None, :], axis=-1), size)  # N x use x H x W
    total = n * use
    log.info("Score-CAM: %d images x %d channels = %d forward passes", n, use, total)
    scores = np.empty(total, np.float64)
    chunk = chunk_size(images.shape[1:], batch_size)
    for start in range(0, total, chunk):
        flat = np.arange(start, min(start + chunk, total))
        img, ch = np.divmod(flat, use)
        batch = images[img] * masks[img, ch][..., None]
        scores[flat] = predict_probs(model, batch, batch_size)[np.arange(len(flat)), targets[img]]
    weights = np.zeros((n, k), np.float64)
    np.put_along_axis(weights, chosen, scores.reshape(n, use), axis=1)
    return _weighted(a.astype(np.float64), weights)
