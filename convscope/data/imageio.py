"""Decoding any raw file to 8-bit RGB, and the one definition of square resizing.

`load_rgb` is the only way stages read raw images: it decodes fully (a header is
not proof of a usable image), applies EXIF orientation, flattens every Pillow mode
to RGB and raises `ImageRejected` with a short machine-friendly reason for files
that are not usable images. `resize_square` and `map_box` share `square_geometry`,
so pixels and bounding boxes always go through the same transform.

Coordinates (boxes, `source_size`) are in the image as displayed, i.e. after EXIF
orientation, in full-resolution pixels even when JPEG draft mode decoded smaller.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Reasons `ImageRejected.reason` takes (the clean manifest's `reason` column).
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
TOO_LARGE = "too_large"
TRUNCATED = "truncated"
UNDECODABLE = "undecodable"

POLICIES = ("center_crop", "pad", "squash")
_ORIENTATION = 0x0112
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_RESAMPLE = Image.Resampling.BICUBIC
_REDUCING_GAP = 3.0  # fast integer reduce first, then bicubic; visually lossless
# Image.open warns (or raises) from PIL's own global pixel limit; our max_pixels
# guard replaces it. Silencing that warning needs the global warnings filter,
# which is not thread-safe, so only the (cheap, header-only) open is serialised.
_OPEN_LOCK = threading.Lock()


class ImageRejected(Exception):
    """A raw file that is not a usable image. `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str = "", header: dict | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        # What the header said (width, height, mode, format) when it could be read.
        self.header = header or {}


def _sniff(head: bytes) -> str:
    """What a file Pillow cannot identify looks like, for the quarantine detail."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in text or (text.startswith(b"<?xml") and b"svg" in text):
        return "SVG (vector image, not supported)"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return "HTML page"
    if text.startswith((b"{", b"[")):
        return "JSON/text"
    if text.startswith(b"%pdf"):
        return "PDF document"
    try:
        head.decode("utf-8")
        return "text file"
    except UnicodeDecodeError:
        return f"unknown binary (starts {head[:8].hex()})"


def _open(path: Path) -> ImageFile.ImageFile:
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(path)


def _decode_error(exc: BaseException) -> ImageRejected:
    msg = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, Image.DecompressionBombError):
        return ImageRejected(TOO_LARGE, msg)
    if isinstance(exc, EOFError) or "truncat" in str(exc).lower():
        return ImageRejected(TRUNCATED, msg)
    return ImageRejected(UNDECODABLE, msg)


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float single-channel images scaled (not clipped) to L."""
    arr = np.nan_to_num(np.asarray(img).astype(np.float64))
    if img.mode.startswith("I;16"):
        out = arr / 257.0
    elif img.mode == "F" and arr.min() >= 0 and arr.max() <= 1:
        out = arr * 255.0
    elif img.mode == "I" and arr.min() >= 0 and arr.max() <= 65535:
        out = arr / 257.0  # 16-bit data held in a 32-bit mode
    else:  # unknown range: stretch what is there
        lo, hi = float(arr.min()), float(arr.max())
        out = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "L")


def _flatten(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparency composited on white."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _to_8bit(img).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV


def _orientation(img) -> int:
    """The EXIF orientation tag (1: as stored)."""
    try:
        return int(img.getexif().get(_ORIENTATION, 1) or 1)
    except Exception:
        return 1  # unreadable EXIF: pixels are still usable, unrotated


def load_rgb(
    path: str | Path,
    draft_size: tuple[int, int] | None = None,
    max_pixels: int = 50_000_000,
) -> Image.Image:
    """Fully decode `path` to an 8-bit RGB image (first frame of animations).

    `draft_size` lets JPEG decode at a 1/2, 1/4 or 1/8 scale that is still at
    least that size (much faster for camera images). The result's `info` holds
    `source_size` (displayed full-resolution size), `source_mode` and
    `source_format`. Raises ImageRejected for anything unusable.
    """
    path = Path(path)
    try:
        nbytes = path.stat().st_size
    except OSError as e:
        raise ImageRejected(UNDECODABLE, f"cannot read file: {e}") from e
    if nbytes == 0:
        raise ImageRejected(EMPTY_FILE, "0 bytes")
    try:
        img = _open(path)
    except UnidentifiedImageError as e:
        with open(path, "rb") as f:
            head = f.read(512)
        raise ImageRejected(NOT_AN_IMAGE, _sniff(head)) from e
    except Exception as e:
        raise _decode_error(e) from e
    with img:
        width, height = img.size
        source_mode, source_format = img.mode, img.format or ""
        header = {"width": width, "height": height, "mode": source_mode, "format": source_format}
        if width * height > max_pixels:
            raise ImageRejected(TOO_LARGE, f"{width}x{height} exceeds max_pixels={max_pixels}", header)
        if width < 1 or height < 1:
            raise ImageRejected(UNDECODABLE, f"header size {width}x{height}", header)
        orientation = _orientation(img)
        if draft_size and img.format in ("JPEG", "MPO"):
            dw, dh = draft_size
            img.draft("RGB", (dh, dw) if orientation in _ROTATED else (dw, dh))
        try:
            img.load()
            if orientation != 1:
                img = ImageOps.exif_transpose(img)
            out = _flatten(img)
            if out is img:  # detach from the file-backed image before it closes
                out = out.copy()
        except Exception as e:
            err = _decode_error(e)
            err.header = header
            raise err from e
    if out.width < 1 or out.height < 1:
        raise ImageRejected(UNDECODABLE, f"decoded size {out.width}x{out.height}")
    out.info = {
        "source_size": (height, width) if orientation in _ROTATED else (width, height),
        "source_mode": source_mode,
        "source_format": source_format,
    }
    return out


# ---- square resizing: one geometry for pixels and boxes ---------------------


@dataclass(frozen=True)
class SquareGeometry:
    """How a source of `source_size` lands in a `size` x `size` square.

    The source region `crop` (x0, y0, x1, y1, source pixels, may be fractional)
    is scaled to `scaled` (w, h) and placed at `offset` (x, y) in the square.
    """

    size: int
    crop: tuple[float, float, float, float]
    scaled: tuple[int, int]
    offset: tuple[int, int]


def square_geometry(source_size: tuple[int, int], size: int, policy: str) -> SquareGeometry:
    w, h = source_size
    if policy == "center_crop":
        side = min(w, h)
        x0, y0 = (w - side) / 2, (h - side) / 2
        return SquareGeometry(size, (x0, y0, x0 + side, y0 + side), (size, size), (0, 0))
    if policy == "pad":
        scale = size / max(w, h)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        return SquareGeometry(size, (0.0, 0.0, float(w), float(h)), (sw, sh), ((size - sw) // 2, (size - sh) // 2))
    if policy == "squash":
        return SquareGeometry(size, (0.0, 0.0, float(w), float(h)), (size, size), (0, 0))
    raise ValueError(f"resize policy {policy!r} is not one of {POLICIES}")


def _draft_scale(source: int, decoded: int) -> float:
    """Source pixels per decoded pixel: exact for JPEG draft (ceil(source / s))."""
    for s in (1, 2, 4, 8):
        if -(-source // s) == decoded:
            return float(s)
    return source / decoded


def resize_square(
    img: Image.Image,
    size: int,
    policy: str,
    *,
    source_size: tuple[int, int] | None = None,
    fill: tuple[int, int, int] = (0, 0, 0),
) -> Image.Image:
    """`img` (RGB) to a `size` x `size` image by center_crop, pad (with `fill`) or squash.

    `source_size` defaults to `img.info["source_size"]` (set by load_rgb), so a
    draft-decoded image lands exactly where the full-resolution one would.
    """
    source_size = source_size or img.info.get("source_size") or img.size
    g = square_geometry(source_size, size, policy)
    sx = _draft_scale(source_size[0], img.width)
    sy = _draft_scale(source_size[1], img.height)
    x0, y0, x1, y1 = g.crop
    box = (x0 / sx, y0 / sy, min(x1 / sx, img.width), min(y1 / sy, img.height))
    scaled = img.resize(g.scaled, _RESAMPLE, box=box, reducing_gap=_REDUCING_GAP)
    if g.scaled == (size, size):
        return scaled
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(scaled, g.offset)
    return canvas


def map_box(
    box: tuple[float, float, float, float],
    source_size: tuple[int, int],
    size: int,
    policy: str,
) -> tuple[float, float, float, float] | None:
    """A box (x0, y0, x1, y1) in source pixels -> the same box in the resized square.

    Clipped to the visible image; None when nothing of the box survives (cropped away).
    """
    g = square_geometry(source_size, size, policy)
    cx0, cy0, cx1, cy1 = g.crop
    kx, ky = g.scaled[0] / (cx1 - cx0), g.scaled[1] / (cy1 - cy0)
    ox, oy = g.offset
    bx0, by0, bx1, by1 = box
    x0 = min(max(ox + (bx0 - cx0) * kx, ox), ox + g.scaled[0])
    x1 = min(max(ox + (bx1 - cx0) * kx, ox), ox + g.scaled[0])
    y0 = min(max(oy + (by0 - cy0) * ky, oy), oy + g.scaled[1])
    y1 = min(max(oy + (by1 - cy0) * ky, oy), oy + g.scaled[1])
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1, y1)
