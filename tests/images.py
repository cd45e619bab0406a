"""Small test pictures drawn in numpy (tests/test_clean.py, test_quality.py, test_imageio.py)."""

from __future__ import annotations

import numpy as np


def blocks(seed, size=(64, 64), cell=8, colours=(0, 256)) -> np.ndarray:
    """Random coloured blocks (w x h = size, cell x cell pixels each, from 8 colours with
    channels in [colours[0], colours[1])): every seed a distinct picture, far apart in
    phash, and exact in every lossless format."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(*colours, (8, 3), dtype=np.uint8)
    w, h = size
    idx = rng.integers(0, 8, (h // cell + 1, w // cell + 1))
    return np.ascontiguousarray(palette[idx].repeat(cell, 0).repeat(cell, 1)[:h, :w])
