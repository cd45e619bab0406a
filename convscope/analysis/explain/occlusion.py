"""Occlusion sensitivity (Zeiler & Fergus 2014): how much the target class's
probability drops when a square patch of the image is covered.

Every patch position of every image is one forward pass; they are generated in
chunks and run through `model.predict` in batches, never one image at a time.
A pixel's value is the mean drop over the patches that cover it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def positions(side: int, patch: int, stride: int) -> list[int]:
    """Patch start offsets along one side; the last patch is flush with the edge."""
    if not 1 <= patch <= side:
        raise ValueError(
            f"occlusion patch {patch} must be between 1 and the image side {side} (analysis.occlusion.patch)"
        )
    if stride < 1:
        raise ValueError(f"occlusion stride {stride} must be at least 1 (analysis.occlusion.stride)")
    starts = list(range(0, side - patch + 1, stride))
    if starts[-1] != side - patch:
        starts.append(side - patch)
    return starts


def fill_values(images, fill) -> np.ndarray:
    """N x 3 colour that covers a patch: "mean" = the image's mean colour, or a number 0-255."""
    images = np.asarray(images)
    if fill == "mean":
        return images.reshape(len(images), -1, images.shape[-1]).mean(axis=1).astype(np.float32)
    if isinstance(fill, (int, float)) and 0 <= fill <= 255:
        return np.full((len(images), images.shape[-1]), float(fill), np.float32)
    raise ValueError(f"occlusion fill {fill!r} must be 'mean' or a number between 0 and 255 (analysis.occlusion.fill)")


def chunk_size(image_shape, batch_size: int, megabytes: int = 128) -> int:
    """Images per generated chunk: whole batches, about `megabytes` of float32 pixels."""
    per_image = int(np.prod(image_shape)) * 4
    return max(batch_size, (megabytes * 2**20 // per_image) // batch_size * batch_size)


def predict_probs(model, images, batch_size: int) -> np.ndarray:
    return np.asarray(model.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0))


@dataclass(frozen=True)
class Patches:
    """Config analysis.occlusion: the square patch's side and step (pixels) and what covers it."""

    patch: int
    stride: int
    fill: str | float  # analysis.occlusion.fill, see fill_values


def occlusion(
    model, images, targets, patches: Patches, *, batch_size: int = 64, chunk: int | None = None
) -> np.ndarray:
    """Occlusion maps N x H x W: mean drop of p(target) over the patches covering each pixel.

    model: the classifier (uint8-valued float images in, probabilities out).
    """
    patch, stride, fill = patches.patch, patches.stride, patches.fill
    images = np.asarray(images)
    targets = np.asarray(targets, dtype=np.int64)
    n, height, width = images.shape[:3]
    ys, xs = positions(height, patch, stride), positions(width, patch, stride)
    masks = np.zeros((len(ys) * len(xs), height, width, 1), dtype=bool)
    for i, (y, x) in enumerate((y, x) for y in ys for x in xs):
        masks[i, y : y + patch, x : x + patch] = True
    coverage = masks[..., 0].sum(axis=0).astype(np.float64)
    fills = fill_values(images, fill)
    base = predict_probs(model, images, batch_size)[np.arange(n), targets]
    n_patches = len(masks)
    total = n * n_patches
    log.info(
        "occlusion: %d images x %d patches (%d px, stride %d) = %d forward passes", n, n_patches, patch, stride, total
    )
    drops = np.empty(total, dtype=np.float64)
    chunk = chunk or chunk_size(images.shape[1:], batch_size)
    for start in range(0, total, chunk):
        flat = np.arange(start, min(start + chunk, total))
        img, pat = np.divmod(flat, n_patches)
        batch = np.where(masks[pat], fills[img][:, None, None, :], images[img].astype(np.float32))
        probs = predict_probs(model, batch, batch_size)
        drops[flat] = base[img] - probs[np.arange(len(flat)), targets[img]]
    drops = drops.reshape(n, n_patches)
    maps = np.einsum("np,phw->nhw", drops, masks[..., 0].astype(np.float64)) / coverage
    return maps.astype(np.float32)
