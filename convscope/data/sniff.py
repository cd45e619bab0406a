"""The crawl stage's gate for incoming bytes: is it an image, which extension, big enough?

Only the header is read (as icrawler does): a truncated JPEG passes here and is
quarantined later by clean, which decodes fully.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

# Pillow format -> file extension. MPO is how Pillow names many phone-camera JPEGs.
_EXT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif"}


@dataclass(frozen=True)
class Sniffed:
    ext: str = ""
    size: tuple[int, int] | None = None
    error: str = ""  # why the bytes are rejected; empty when accepted


def sniff(data: bytes, min_side: int | None = None, content_type: str | None = None) -> Sniffed:
    if not data:
        return Sniffed(error="empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, size = img.format, img.size
    except Image.DecompressionBombError as e:
        return Sniffed(error=f"decompression-bomb guard: {e}")
    except Exception as e:
        what = f" (Content-Type {content_type})" if content_type else ""
        why = "" if isinstance(e, Image.UnidentifiedImageError) else f": {type(e).__name__}: {e}"
        return Sniffed(error=f"not an image Pillow can identify{what}{why}"[:300])
    ext = _EXT.get(fmt, (fmt or "img").lower())
    if min_side and min(size) < min_side:
        return Sniffed(ext, size, f"{size[0]}x{size[1]} is smaller than min_side {min_side}")
    return Sniffed(ext, size)
