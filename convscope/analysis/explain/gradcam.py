"""Grad-CAM and Grad-CAM++ class-activation maps at a conv layer.

Grad-CAM (Selvaraju et al. 2017): with A the layer's activations (h x w x K) and
g = d score / d A, each channel gets the weight mean_ab g[a, b, k] and the map
is relu(sum_k weight_k A_k). Grad-CAM++ (Chattopadhay et al. 2018) weights the
positive gradients per position with alpha = g^2 / (2 g^2 + sum_ab A * g^3),
the closed form for an exponential score, which needs first derivatives only.
The score is the class logit (before softmax): probabilities saturate.
"""

from __future__ import annotations

import numpy as np

from convscope.analysis.gradients import value_and_grad


def batched_gradients(fn, x, onehot, batch_size: int, variables=None) -> np.ndarray:
    """Gradients of fn(x, onehot) w.r.t. x in batches of exactly `batch_size`.

    variables: the Keras variables fn reads (see gradients.value_and_grad).
    The last batch is padded (zero images, zero targets: no contribution) so the
    compiled step is traced for one shape only.
    """
    x = np.asarray(x, dtype=np.float32)
    onehot = np.asarray(onehot, dtype=np.float32)
    n = len(x)
    batch_size = max(1, min(batch_size, n))
    out = np.empty_like(x)
    for start in range(0, n, batch_size):
        xb, ob = x[start : start + batch_size], onehot[start : start + batch_size]
        real = len(xb)
        if real < batch_size:
            xb = np.concatenate([xb, np.zeros((batch_size - real, *xb.shape[1:]), xb.dtype)])
            ob = np.concatenate([ob, np.zeros((batch_size - real, *ob.shape[1:]), ob.dtype)])
        out[start : start + real] = value_and_grad(fn, xb, ob, compile=True, variables=variables)[1][:real]
    return out


def onehot_targets(targets, n_classes: int) -> np.ndarray:
    targets = np.asarray(targets, dtype=np.int64)
    if len(targets) and (targets.min() < 0 or targets.max() >= n_classes):
        raise ValueError(f"target classes {sorted(set(targets.tolist()))} are outside 0..{n_classes - 1}")
    return np.eye(n_classes, dtype=np.float32)[targets]


def layer_gradients(cut, images, targets, n_classes: int, *, batch_size: int = 32):
    """(activations, gradients of the target logits w.r.t. them), both N x h x w x K numpy."""
    images = np.asarray(images, dtype=np.float32)
    activations = np.asarray(cut.to_layer.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)
    grads = batched_gradients(
        cut.class_score, activations, onehot_targets(targets, n_classes), batch_size, variables=cut.variables
    )
    return activations, grads


def cams_from(activations, grads) -> dict[str, np.ndarray]:
    """Grad-CAM and Grad-CAM++ maps (N x h x w, unnormalised) from activations and gradients."""
    a = np.asarray(activations, dtype=np.float64)
    g = np.asarray(grads, dtype=np.float64)
    weights = g.mean(axis=(1, 2))  # N x K
    gradcam = np.maximum(np.einsum("nhwk,nk->nhw", a, weights), 0)
    g2, g3 = g**2, g**3
    denom = 2 * g2 + a.sum(axis=(1, 2), keepdims=True) * g3
    alpha = np.divide(g2, denom, out=np.zeros_like(g2), where=denom != 0)
    weights_pp = (alpha * np.maximum(g, 0)).sum(axis=(1, 2))
    gradcam_pp = np.maximum(np.einsum("nhwk,nk->nhw", a, weights_pp), 0)
    return {"gradcam": gradcam.astype(np.float32), "gradcam++": gradcam_pp.astype(np.float32)}


def gradcam(cut, images, targets, n_classes: int, *, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Grad-CAM and Grad-CAM++ at the layer `cut` was made at, for one target class per image.

    cut: convscope.analysis.split_model.cut(model, last_conv)
    images: N x H x W x 3 (uint8 or uint8-valued float); targets: N class indices.
    Returns {"gradcam": N x h x w, "gradcam++": N x h x w} at the layer's resolution;
    `upsample` brings them to image size.
    """
    activations, grads = layer_gradients(cut, images, targets, n_classes, batch_size=batch_size)
    return cams_from(activations, grads)


def upsample(maps, size) -> np.ndarray:
    """Maps N x h x w bilinearly resized to N x H x W (size = (H, W))."""
    from convscope.analysis.plots import resize_map

    return np.stack([resize_map(m, tuple(size)) for m in np.asarray(maps, dtype=np.float32)])
