"""Checks that an explanation points at the object.

- Pointing game (Zhang et al. 2016): a hit when the map's maximum falls inside
  the object's bounding box, grown by a tolerance (theirs: 15 px at 224 px, since a
  coarse map's peak on the object's outline can land just outside a tight box).
  Chance level is the grown box's share of the image (a maximum at a uniformly
  random pixel), reported as the mean area fraction;
  a map that always peaks at the image centre is the second baseline (objects
  are often central, so a centre-biased map beats area chance without looking).
- Deletion curve (Petsiuk et al. 2018): the true class's probability as the
  most salient pixels are replaced by the image's mean colour, in steps; a good
  map makes it fall fast (low area under the curve). A random pixel order is the
  baseline.
- Insertion curve (same paper): the other direction, from the mean-colour image
  the most salient pixels are put back first; a good map makes p(true class)
  rise fast (high area under the curve). Same random baseline, same images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from convscope.analysis.explain.gradcam import upsample
from convscope.analysis.explain.occlusion import chunk_size, fill_values, predict_probs


def box_fractions(boxes, size) -> np.ndarray:
    """Area of each box (clipped to the image) as a fraction of the image; NaN without a box."""
    height, width = size
    b = np.asarray(boxes, dtype=np.float64)
    w = np.clip(b[:, 2], 0, width) - np.clip(b[:, 0], 0, width)
    h = np.clip(b[:, 3], 0, height) - np.clip(b[:, 1], 0, height)
    return np.clip(w, 0, None) * np.clip(h, 0, None) / (height * width)


def peaks(maps, size) -> np.ndarray:
    """(row, col) of each map's maximum after resizing to `size`; (-1, -1) for a flat map.

    A flat map (e.g. Grad-CAM all zero after its ReLU) points nowhere and counts as a miss.
    """
    maps = upsample(maps, size)
    flat = maps.reshape(len(maps), -1)
    idx = flat.argmax(axis=1)
    rows, cols = np.divmod(idx, size[1])
    flat_map = flat.max(axis=1) <= flat.min(axis=1)
    rows[flat_map] = -1
    cols[flat_map] = -1
    return np.stack([rows, cols], axis=1)


def pointing_hits(maps, boxes, size, *, tolerance: float = 0.0) -> np.ndarray:
    """True where the map's maximum (pixel centre) lies in the box grown by `tolerance` pixels."""
    p = peaks(maps, size)
    b = np.asarray(boxes, dtype=np.float64)
    y, x = p[:, 0] + 0.5, p[:, 1] + 0.5
    inside = (
        (x >= b[:, 0] - tolerance)
        & (x <= b[:, 2] + tolerance)
        & (y >= b[:, 1] - tolerance)
        & (y <= b[:, 3] + tolerance)
    )
    return inside & (p[:, 0] >= 0)


def pointing_game(maps_by_method: dict, boxes, size, *, tolerance: float = 0.0) -> dict:
    """Pointing accuracy per method on the images that have a box, with both baselines.

    Also scored on the off-centre images alone (box not covering the image centre),
    where the centre baseline is 0 by construction and a map has to find the object.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    has_box = np.isfinite(boxes).all(axis=1)
    n = int(has_box.sum())
    if n == 0:
        return {
            "images": 0,
            "chance": None,
            "centre_baseline": None,
            "methods": {},
            "hits": {},
            "note": "no test image has an object box",
        }
    b = boxes[has_box]
    grown = b + np.array([-tolerance, -tolerance, tolerance, tolerance])
    centre = np.zeros((n, size[0], size[1]), np.float32)
    centre[:, (size[0] - 1) // 2, (size[1] - 1) // 2] = 1.0
    centre_hits = pointing_hits(centre, b, size, tolerance=tolerance)
    off = ~centre_hits
    methods, hits = {}, {}
    for name, maps in maps_by_method.items():
        h = pointing_hits(np.asarray(maps)[has_box], b, size, tolerance=tolerance)
        hits[name] = h
        methods[name] = {
            "accuracy": float(h.mean()),
            "hits": int(h.sum()),
            "images": n,
            "off_centre_accuracy": float(h[off].mean()) if off.any() else None,
        }
    return {
        "images": n,
        "chance": float(box_fractions(grown, size).mean()),
        "centre_baseline": float(centre_hits.mean()),
        "off_centre_images": int(off.sum()),
        "off_centre_chance": float(box_fractions(grown[off], size).mean()) if off.any() else None,
        "tolerance_px": tolerance,
        "methods": methods,
        "hits": hits,
        "rows": np.flatnonzero(has_box),
    }


@dataclass(frozen=True)
class CurveSettings:
    """How deletion/insertion curves are sampled and batched."""

    steps: int  # fractions 0, 1/steps, ..., 1: analysis.checks.deletion_steps
    batch_size: int  # analysis.batch_size
    seed: int = 0  # the random order and the tie-breaks
    chunk: int | None = None  # images generated per chunk (None: about 128 MB, occlusion.chunk_size)
    insertion: bool = False  # True: put the top pixels back into the mean-colour image instead


def _end_points(model, images, targets, fills, settings: CurveSettings) -> np.ndarray:
    """p(target) of the unchanged and of the all-filled images (2 x N), swapped for insertion."""
    n = len(images)
    ends = predict_probs(
        model,
        np.concatenate([images.astype(np.float32), np.broadcast_to(fills[:, None, None, :], images.shape)]),
        settings.batch_size,
    )[np.arange(2 * n), np.tile(targets, 2)].reshape(2, n)
    return ends[::-1] if settings.insertion else ends


def _ranks(orders: dict, rng) -> np.ndarray:
    """rank[m, i, p] = position of pixel p in method m's order for image i, most salient first;
    ties (flat regions of a map) are broken at random, not in raster order."""
    first = next(iter(orders.values()))
    n, pixels = first.shape
    rank = np.empty((len(orders), n, pixels), dtype=np.int64)
    for m, name in enumerate(orders):
        order = np.lexsort((rng.random(orders[name].shape), -orders[name]), axis=1)
        rank[m, np.arange(n)[:, None], order] = np.arange(pixels)[None, :]
    return rank


def deletion_curves(model, images, targets, maps_by_method: dict, settings: CurveSettings) -> tuple[np.ndarray, dict]:
    """p(target) as the top fraction f of pixels (by each map) is replaced by the mean colour.

    settings.insertion=True: the other direction, p(target) of the mean-colour image with the top
    fraction f of pixels put back (the insertion curve).
    Returns (fractions, {method: N x (steps + 1) probabilities}); the method "random"
    (a random pixel order) is added as the baseline. Every modified image of every
    step and method goes through `model.predict` in batches, all methods in one stream.
    """
    images = np.asarray(images)
    targets = np.asarray(targets, dtype=np.int64)
    n, height, width = images.shape[:3]
    fractions = np.linspace(0.0, 1.0, settings.steps + 1)
    rng = np.random.default_rng(settings.seed)
    orders = {name: upsample(m, (height, width)).reshape(n, -1) for name, m in maps_by_method.items()}
    orders["random"] = rng.random((n, height * width))
    fills = fill_values(images, "mean")
    counts = np.rint(fractions * height * width).astype(np.int64)
    chunk = settings.chunk or chunk_size(images.shape[1:], settings.batch_size)
    # Nothing and everything changed are the same images for every order: evaluated once.
    ends = _end_points(model, images, targets, fills, settings)
    inner = np.arange(1, len(fractions) - 1)
    names = list(orders)
    rank = _ranks(orders, rng)
    curves = np.empty((len(names), n, len(fractions)))
    curves[:, :, 0], curves[:, :, -1] = ends
    # Every method's images in one stream of chunks: few large predict calls, not one per method.
    total = len(names) * n * len(inner)
    for start in range(0, total, chunk):
        flat = np.arange(start, min(start + chunk, total))
        m, rest = np.divmod(flat, n * len(inner))
        img, step = np.divmod(rest, len(inner))
        step = inner[step]
        top = (rank[m, img] < counts[step][:, None]).reshape(len(flat), height, width, 1)
        filled = ~top if settings.insertion else top
        batch = np.where(filled, fills[img][:, None, None, :], images[img].astype(np.float32))
        curves[m, img, step] = predict_probs(model, batch, settings.batch_size)[np.arange(len(flat)), targets[img]]
    out = {name: curves[m] for m, name in enumerate(names)}
    return fractions, out


def faithfulness(
    model, images, targets, maps_by_method: dict, *, directions=("deletion", "insertion"), settings: CurveSettings
) -> dict:
    """Deletion and insertion curves and their AUCs, each against the random order.

    settings.insertion is set per direction. Returns {"fractions", "curves": {direction:
    {method: N x steps+1}}, "auc": {direction: {method: mean AUC}}, "gain": {direction:
    {method: how much better than random}}} with gain = random - method for deletion
    (lower is better) and method - random for insertion.
    """
    result = {"curves": {}, "auc": {}, "gain": {}}
    for direction in directions:
        fractions, curves = deletion_curves(
            model, images, targets, maps_by_method, replace(settings, insertion=direction == "insertion")
        )
        aucs = {name: float(auc(fractions, c).mean()) for name, c in curves.items()}
        sign = -1.0 if direction == "deletion" else 1.0
        result["fractions"] = fractions
        result["curves"][direction] = curves
        result["auc"][direction] = aucs
        result["gain"][direction] = {name: sign * (v - aucs["random"]) for name, v in aucs.items() if name != "random"}
    return result


def auc(fractions, curves) -> np.ndarray:
    """Area under each curve (rows) over the deleted fraction, trapezoidal rule."""
    curves = np.asarray(curves, dtype=np.float64)
    f = np.asarray(fractions, dtype=np.float64)
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * np.diff(f)).sum(axis=1)
