"""Near copies by pixels, with a threshold calibrated on the image set itself.

A near copy is an image re-encoded, shifted by a pixel or two, made a little
brighter or darker, or slightly cropped. Look-alikes (two scans of the same digit,
two photos of the same kind of object) are not. A perceptual hash or an embedding
similarity cannot tell the two apart on small, simple images: distinct digit scans
share a 64-bit phash within 4 bits, and random-weight embeddings of unrelated
images sit at cosine 0.97. So a pair is decided on the pixels:

- each image becomes a grey square thumbnail whose side follows the set's image size
  (its median shorter side, 16 to 32 px): small scans are compared at their own
  resolution, photos at 32 px;
- candidates are each image's nearest neighbours by the correlation of blurred
  8x8 versions, as they are and re-centred and scaled by their intensity moments
  (cheap, and tolerant of shifts and crops);
- a candidate pair is scored by its *aligned residual*: 1 - the best normalised
  cross-correlation over shifts of up to `shift` px and centre crops of up to
  `crops` px (zoomed back), tried in both directions. Normalising removes
  brightness and contrast changes; alignment removes shifts and crops;
- the threshold is calibrated on the set: the median nearest-neighbour residual of
  distinct images in it, divided by `factor` (default 10), and never looser than
  CAP. Measured with aligned residuals: scikit-learn's digits at 32 px, median 0.039,
  closest distinct pair 0.0056, planted copies at most 0.0019; 5,000 MNIST scans at
  28 px, median 0.138, closest distinct pair 0.032, planted copies at most 0.0086.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

MAX_SIDE = 32  # thumbnails at most this side: near copies stay near, and a pair costs 23x less than at 64
MIN_SIDE = 16
COARSE = 8  # side of the blurred candidate-search vectors
CANDIDATES = 15  # nearest neighbours per image and per search feature scored at pixel level
CAP = 0.02  # never call a pair with an aligned correlation below 0.98 a near copy
SAMPLE = 400  # images whose nearest-neighbour residual calibrates the threshold


def thumbnail(img: Image.Image) -> np.ndarray:
    """The grey square (uint8) an image is compared by: side = min(MAX_SIDE, shorter side)."""
    side = max(1, min(MAX_SIDE, *img.size))
    return np.asarray(img.convert("L").resize((side, side), Image.BILINEAR), dtype=np.uint8)


def common_side(thumbs: list[np.ndarray]) -> int:
    """The comparison side for a set: its median thumbnail side, within MIN_SIDE..MAX_SIDE."""
    if not thumbs:
        return MIN_SIDE
    return int(np.clip(np.median([t.shape[0] for t in thumbs]), MIN_SIDE, MAX_SIDE))


def _resized(t: np.ndarray, side: int) -> np.ndarray:
    if t.shape[0] == side:
        return t
    return np.asarray(Image.fromarray(t).resize((side, side), Image.BILINEAR), dtype=np.uint8)


def _unit(v: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm (a flat row stays zero)."""
    v = v - v.mean(axis=-1, keepdims=True)
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-6)


@dataclass(frozen=True)
class Calibration:
    """The near-copy threshold of one set and where it comes from."""

    median: float  # median nearest-neighbour aligned residual of the set
    factor: float
    threshold: float
    side: int

    def describe(self) -> str:
        return (
            f"aligned pixel residual <= {self.threshold:.4f} = min({CAP}, median nearest-neighbour "
            f"residual {self.median:.4f} / {self.factor:g}) at {self.side} px"
        )


def _moments(a: np.ndarray) -> np.ndarray:
    """Blurred 8x8 of `a` re-centred on its intensity centroid and scaled to a fixed spread.

    Shifts and crops move and scale the content; after this they hardly change the vector,
    so a shifted or cropped copy is among its source's nearest candidates (measured on
    digits: rank <= 7 of 1,797, against up to 47 without)."""
    side = a.shape[0]
    background = float(np.median(a))
    w = np.abs(a.astype(np.float32) - background)
    total = w.sum() + 1e-6
    ys, xs = np.mgrid[0:side, 0:side]
    cy, cx = (w * ys).sum() / total, (w * xs).sum() / total
    spread = np.sqrt((w * ((ys - cy) ** 2 + (xs - cx) ** 2)).sum() / total) + 1e-6
    s = spread / (side / 4)
    moved = Image.fromarray(a).transform(
        (side, side),
        Image.AFFINE,
        (s, 0, cx - s * side / 2, 0, s, cy - s * side / 2),
        Image.BILINEAR,
        fillcolor=int(background),
    )
    return np.asarray(moved.filter(ImageFilter.GaussianBlur(side / 32)).resize((COARSE, COARSE)), np.float32).ravel()


class Pixels:
    """Thumbnails of a set at one side, with candidate search and the aligned residual."""

    def __init__(self, thumbs: list[np.ndarray], side: int):
        self.side = side
        self._zoomed: dict[int, np.ndarray] = {}  # see _zooms
        self.shift = max(2, round(side / 16))
        self.crops = max(1, round(side / 10))
        self.x = np.stack([_resized(t, side) for t in thumbs]) if thumbs else np.zeros((0, side, side), np.uint8)
        s = self.shift
        self.centre = _unit(self.x[:, s : side - s, s : side - s].reshape(len(self.x), -1).astype(np.float32))
        small = [
            Image.fromarray(a).filter(ImageFilter.GaussianBlur(side / 16)).resize((COARSE, COARSE)) for a in self.x
        ]
        self.coarse = _unit(np.stack([np.asarray(a, np.float32).ravel() for a in small])) if thumbs else self.centre
        self.moments = _unit(np.stack([_moments(a) for a in self.x])) if thumbs else self.centre

    def variants(self, i: int) -> np.ndarray:
        """Unit rows: image i centre-cropped by 0..crops px (zoomed back), then shifted by up to shift px."""
        w = self.side - 2 * self.shift
        windows = np.lib.stride_tricks.sliding_window_view(self._zooms(i), (w, w), axis=(1, 2))
        return _unit(windows.reshape(-1, w * w).astype(np.float32))

    def _zooms(self, i: int) -> np.ndarray:
        """Image i centre-cropped by 0..crops px and zoomed back, stacked; made once per image (an image
        is scored in several searches, and these resizes were most of the search's time)."""
        if i not in self._zoomed:
            a, side = self.x[i], self.side
            crops = [
                Image.fromarray(a).crop((c, c, side - c, side - c)).resize((side, side))
                for c in range(1, self.crops + 1)
            ]
            self._zoomed[i] = np.stack([a, *(np.asarray(z) for z in crops)])
        return self._zoomed[i]

    def candidates(self, queries: np.ndarray, pool: np.ndarray, k: int = CANDIDATES) -> dict[int, np.ndarray]:
        """{query index: its nearest pool indices} by blurred 8x8 correlation, plain and moment-normalised (k each)."""
        if not len(queries) or not len(pool):
            return {}
        found = {int(q): set() for q in queries}
        for feats in (self.coarse, self.moments):
            # Exact search in chunks (scikit-learn's brute force): the whole similarity matrix would
            # be 40 GB at 100,000 images. On unit rows, Euclidean order is correlation order.
            near = NearestNeighbors(n_neighbors=min(k + 1, len(pool)), algorithm="brute").fit(feats[pool])
            top = pool[near.kneighbors(feats[queries], return_distance=False)]
            for q, row in zip(queries.tolist(), top.tolist()):
                found[q].update([p for p in row if p != q][:k])  # an image is never its own candidate
        return {q: np.array(sorted(ps), dtype=int) for q, ps in found.items()}

    def residuals(self, pairs: set[tuple[int, int]]) -> dict[tuple[int, int], float]:
        """{(i, j): 1 - best aligned correlation} for each pair, both directions tried."""
        best: dict[tuple[int, int], float] = dict.fromkeys(pairs, -1.0)
        partners: dict[int, list[tuple[int, int]]] = {}
        for i, j in pairs:
            partners.setdefault(i, []).append((i, j))
            partners.setdefault(j, []).append((i, j))
        # One BLAS thread: these products are small, and a thread pool's start-up per product cost
        # 3x the wall time of the whole search on a loaded 2-core machine.
        with threadpool_limits(limits=1, user_api="blas"):
            for n, ps in partners.items():
                v = self.variants(n)
                others = [j if i == n else i for i, j in ps]
                corr = (v @ self.centre[others].T).max(axis=0)
                for p, c in zip(ps, corr.tolist()):
                    best[p] = max(best[p], c)
        return {p: max(0.0, 1 - c) for p, c in best.items()}

    def calibrate(self, among: np.ndarray, factor: float, seed: int = 0) -> Calibration:
        """Threshold from the median nearest-neighbour residual of (a sample of) `among` within itself."""
        if len(among) < 3 or factor <= 0:
            return Calibration(float("nan"), factor, CAP if factor > 0 else -1.0, self.side)
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(among, min(SAMPLE, len(among)), replace=False))
        cand = self.candidates(sample, among)
        res = self.residuals({(int(q), int(p)) for q, ps in cand.items() for p in ps})
        nearest = [min(res[(int(q), int(p))] for p in ps) for q, ps in cand.items() if len(ps)]
        median = float(np.median(nearest))
        return Calibration(median, factor, min(CAP, median / factor), self.side)

    def matches(
        self, queries: np.ndarray, pool: np.ndarray, threshold: float, extra: set[tuple[int, int]] = frozenset()
    ) -> dict[int, list[tuple[float, int]]]:
        """{query: [(residual, pool index), ...] closest first} of the candidate pairs at or below threshold.

        extra: more (query, pool) pairs to score, e.g. nearest neighbours in an embedding."""
        cand = self.candidates(queries, pool)
        res = self.residuals({(q, int(p)) for q, ps in cand.items() for p in ps} | set(extra))
        found: dict[int, list[tuple[float, int]]] = {}
        for (q, p), r in sorted(res.items(), key=lambda kv: (kv[1], kv[0])):
            if r <= threshold:
                found.setdefault(q, []).append((round(r, 5), p))
        return found
