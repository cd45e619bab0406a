"""New images in, the way `prepare` reads raw ones: the same decoding, EXIF, colour and resize."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convscope.data import imageio


@dataclass
class Loaded:
    """One file of the folder: its pixels (size x size x 3 uint8) or why it has none."""

    name: str
    sha256: str
    pixels: np.ndarray | None = None
    reason: str = ""  # ImageRejected's reason and detail, e.g. "truncated: image file is truncated"


def listing(folder) -> list[Path]:
    """The files a predict job reads: regular, not hidden, sorted by name (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"config key predict.folder (or --config predict_folder=DIR): {folder} is not a folder of images"
        )
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def fingerprint(folder) -> dict[str, list[int]]:
    """{file name: [bytes, mtime_ns]}: the rule's param, so adding or editing a file reruns the job."""
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in listing(folder)}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load(path: Path, size: int, policy: str, max_pixels: int) -> Loaded:
    """Decode and resize one file as prepare does (imageio.load_rgb + resize_square); never raises for bad files."""
    path = Path(path)
    item = Loaded(path.name, sha256_of(path))
    try:
        img = imageio.load_rgb(path, draft_size=(size, size), max_pixels=max_pixels)
        item.pixels = np.asarray(imageio.resize_square(img, size, policy), dtype=np.uint8)
    except imageio.ImageRejected as e:
        item.reason = str(e)
    return item
