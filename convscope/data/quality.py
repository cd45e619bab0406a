"""Cheap per-image quality measures and the flags they raise (flags only: nothing is removed).

Measured with Pillow/NumPy on the image clean decodes anyway, shrunk to at most
SIDE px so the figures do not depend on the file's resolution:

- sharpness: variance of the 4-neighbour Laplacian of the gray image over its variance
  (low = blurry; the ratio keeps dim or low-contrast images from counting as blurry);
- brightness: mean gray level in [0, 1] (too dark / too bright);
- entropy: Shannon entropy of the gray histogram in bits (low = near-uniform, little information);
- aspect: longer side / shorter side of the file;
- colour: mean absolute difference between channels (about 0 = grayscale);
- odd size: the file's pixel count against the median of the set.

CleanVision offers similar checks but pulls pandas/imagehash/matplotlib pins of its own
and decodes every file again; these six measures cost one small array per image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

SIDE = 256
COLUMNS = ["sharpness", "brightness", "entropy", "aspect", "colour", "flags"]
BLURRY, DARK, BRIGHT, LOW_INFO, ASPECT, GRAY, ODD_SIZE = (
    "blurry",
    "dark",
    "bright",
    "low_information",
    "extreme_aspect",
    "grayscale",
    "odd_size",
)
FLAGS = (BLURRY, DARK, BRIGHT, LOW_INFO, ASPECT, GRAY, ODD_SIZE)
DEFAULTS = {
    "blur": 0.05,
    "dark": 0.1,
    "bright": 0.92,
    "entropy": 2.0,
    "aspect": 3.0,
    "grayscale": 2.0,
    "odd_size": 8.0,
}


def measure(img: Image.Image, size: tuple[int, int]) -> dict:
    """The measures of one decoded RGB image whose file is `size` (width, height)."""
    small = img.copy()
    small.thumbnail((SIDE, SIDE))
    rgb = np.asarray(small.convert("RGB"), dtype=np.float32)
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = gray[1:-1, 1:-1] * 4 - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    hist = np.bincount(np.clip(gray, 0, 255).astype(np.uint8).ravel(), minlength=256) / gray.size
    nz = hist[hist > 0]
    colour = (np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])).mean() / 2
    w, h = size
    return {
        # Divided by the gray variance: a dim or low-contrast image is not blurry for that alone.
        "sharpness": round(float(lap.var()) / (float(gray.var()) + 1.0) if lap.size else 0.0, 4),
        "brightness": round(float(gray.mean()) / 255, 4),
        "entropy": round(float(-(nz * np.log2(nz)).sum()), 3),
        "aspect": round(max(w, h) / max(1, min(w, h)), 3),
        "colour": round(float(colour), 3),
    }


def flag_rows(rows: list[dict], thresholds: dict) -> None:
    """Set `flags` (";"-joined) on every row with measures; thresholds: config clean.quality."""
    t = {**DEFAULTS, **(thresholds or {})}
    measured = [r for r in rows if r.get("sharpness") not in (None, "")]
    if not measured:
        return
    grays = sum(float(r["colour"]) < t["grayscale"] for r in measured)
    colour_set = grays < len(measured) / 2  # grayscale is odd only among colour images
    areas = sorted(int(r["width"]) * int(r["height"]) for r in measured)
    median = areas[len(areas) // 2]
    for r in measured:
        area = int(r["width"]) * int(r["height"])
        checks = {
            BLURRY: float(r["sharpness"]) < t["blur"],
            DARK: float(r["brightness"]) < t["dark"],
            BRIGHT: float(r["brightness"]) > t["bright"],
            LOW_INFO: float(r["entropy"]) < t["entropy"],
            ASPECT: float(r["aspect"]) > t["aspect"],
            GRAY: colour_set and float(r["colour"]) < t["grayscale"],
            ODD_SIZE: abs(math.log(max(area, 1) / median)) > math.log(t["odd_size"]),
        }
        r["flags"] = ";".join(name for name, hit in checks.items() if hit)
