"""Test accuracy under common corruptions, ImageNet-C style (Hendrycks & Dietterich, ICLR 2019).

Six corruptions of ImageNet-C's definitions, in NumPy and Pillow: Gaussian noise,
Gaussian blur, contrast, JPEG, brightness, pixelation. Not the `imagecorruptions`
package: it needs opencv-python and scikit-image (neither is in the pins, ~100 MB
together), calls skimage.filters.gaussian(multichannel=...), removed in scikit-image
0.19, and imports pkg_resources, gone from current setuptools.

Severity s in 1..5 takes ImageNet-C's parameter s (`PARAMETERS`); severity 0 is the
image itself. Blur sigma is in pixels, as ImageNet-C defines it for 224 px images: on
small images the same sigma blurs more of the picture (CIFAR-10-C chose smaller ones);
the other corruptions are relative to the image.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from convscope.analysis.index import item, section

log = logging.getLogger(__name__)

# ImageNet-C's parameters for severities 1-5 (imagecorruptions 1.1.2, corruptions.py).
PARAMETERS = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # noise std, [0, 1] scale
    "gaussian_blur": (1, 2, 3, 4, 6),  # sigma in pixels
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),  # factor towards each channel's mean
    "jpeg": (25, 18, 15, 10, 7),  # JPEG quality
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added to HSV value
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),  # downscale factor (box filter, then nearest up)
}
TITLES = {
    "gaussian_noise": "Gaussian noise",
    "gaussian_blur": "blur",
    "contrast": "contrast",
    "jpeg": "JPEG",
    "brightness": "brightness",
    "pixelate": "pixelation",
}


def _unit(x) -> np.ndarray:
    return np.asarray(x, np.float64) / 255.0


def _uint8(x) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x) * 255.0), 0, 255).astype(np.uint8)


# Pointwise corruptions and the blur take the whole N x H x W x 3 batch at once.
def _noise(x, c, rng):
    return _uint8(np.clip(_unit(x) + rng.normal(size=x.shape, scale=c), 0, 1))


def _blur(x, c, rng):
    from scipy.ndimage import gaussian_filter

    return _uint8(np.clip(gaussian_filter(_unit(x), sigma=(0, c, c, 0), mode="nearest"), 0, 1))


def _contrast(x, c, rng):
    x = _unit(x)
    means = x.mean(axis=(1, 2), keepdims=True)
    return _uint8(np.clip((x - means) * c + means, 0, 1))


def _jpeg(img, c, rng):
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=int(c))
    return np.asarray(Image.open(buf).convert("RGB"))


def _brightness(x, c, rng):
    # HSV value + c with hue and saturation kept: every channel scaled by V'/V (black becomes grey V').
    x = _unit(x)
    v = x.max(axis=-1, keepdims=True)
    v_new = np.clip(v + c, 0, 1)
    out = np.where(v > 0, x * v_new / np.maximum(v, 1e-12), v_new)
    return _uint8(np.clip(out, 0, 1))


def _pixelate(img, c, rng):
    from PIL import Image

    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((max(1, int(w * c)), max(1, int(h * c))), Image.BOX)
    return np.asarray(small.resize((w, h), Image.NEAREST))


BATCHED = {"gaussian_noise", "gaussian_blur", "contrast", "brightness"}
FUNCTIONS = {
    "gaussian_noise": _noise,
    "gaussian_blur": _blur,
    "contrast": _contrast,
    "jpeg": _jpeg,
    "brightness": _brightness,
    "pixelate": _pixelate,
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """N x H x W x 3 uint8 images under corruption `name` at ImageNet-C severity 0-5 (0: unchanged)."""
    if name not in FUNCTIONS:
        raise ValueError(f"unknown corruption {name!r} (config analysis.corruptions.names); known: {sorted(FUNCTIONS)}")
    if not 0 <= int(severity) <= 5:
        raise ValueError(f"corruption severity {severity} is not in 0-5 (config analysis.corruptions.severities)")
    images = np.asarray(images, np.uint8)
    if severity == 0:
        return images.copy()
    c = PARAMETERS[name][int(severity) - 1]
    rng = np.random.default_rng(seed)
    if name in BATCHED:
        return FUNCTIONS[name](images, c, rng)
    return np.stack([FUNCTIONS[name](img, c, rng) for img in images])


def accuracy_table(predict, x, labels, names, severities, seed: int = 0) -> list[dict]:
    """Accuracy of `predict` (uint8 images -> class probabilities) per corruption and severity, 0 included."""
    labels = np.asarray(labels)
    clean = float((np.asarray(predict(x)).argmax(axis=1) == labels).mean())
    rows = []
    for name in names:
        rows.append({"corruption": name, "severity": 0, "accuracy": clean})
        for s in severities:
            probs = np.asarray(predict(corrupt(x, name, s, seed)))
            rows.append(
                {"corruption": name, "severity": int(s), "accuracy": float((probs.argmax(axis=1) == labels).mean())}
            )
    return rows


def statement(rows: list[dict], strategy: str) -> str:
    """One sentence: what the run keeps at its worst severity, per corruption, worst first."""
    worst = max(r["severity"] for r in rows)
    clean = next(r["accuracy"] for r in rows if r["severity"] == 0)
    at = sorted((r for r in rows if r["severity"] == worst), key=lambda r: r["accuracy"])
    kept = ", ".join(f"{r['accuracy']:.2f} under {TITLES[r['corruption']]}" for r in at)
    return f"{strategy} keeps {kept} at severity {worst} (ImageNet-C scale; {clean:.2f} on clean test images)."


def figure(rows: list[dict], path: Path, title: str) -> Path:
    from convscope.analysis import plots

    fig, ax = plots.plt.subplots(figsize=(5.2, 3.4))
    for name in dict.fromkeys(r["corruption"] for r in rows):
        sub = [r for r in rows if r["corruption"] == name]
        ax.plot([r["severity"] for r in sub], [r["accuracy"] for r in sub], "o-", label=TITLES[name], ms=4)
    ax.set_xticks(sorted({r["severity"] for r in rows}))
    ax.set_xlabel("severity (ImageNet-C; 0 = clean)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return plots.save_figure(fig, path)


def robustness_section(rows: list[dict], out_dir: Path, strategy: str, images: int) -> dict:
    import pandas as pd

    from convscope import layout, records

    folder = layout.AnalysisFolder(out_dir)
    out_dir, csv, js = folder.path, folder.corruptions_csv, folder.corruptions
    pd.DataFrame(rows).to_csv(csv, index=False)
    text = statement(rows, strategy)
    records.CORRUPTIONS.write(js, {"statement": text, "strategy": strategy, "test_images": images, "rows": rows})
    png = figure(rows, folder.corruptions_png, f"{strategy}: accuracy under corruptions")
    caption = (
        f"{text} Test accuracy of this run on its {images} test images, each corrupted as in ImageNet-C "
        "(Hendrycks & Dietterich 2019; blur sigma in pixels as defined for 224 px images)."
    )
    return section(
        "corruptions",
        "Robustness to common corruptions",
        [
            item("image", png, caption, csv, root=out_dir),
            item("json", js, "Accuracy per corruption and severity.", js, root=out_dir),
        ],
        kind="corruptions",
    )
