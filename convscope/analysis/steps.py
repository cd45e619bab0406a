"""Small helpers every analysis job shares: the labelled images, which to show, how long each step took."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Labelled:
    """Test images with their true classes: what the per-image figures and tables draw from."""

    images: np.ndarray  # N x H x W x 3 uint8
    labels: np.ndarray  # N class indices
    classes: list  # class names
    files: list | None = None  # N source files, for the tables (None: left blank)


def spread_over_classes(labels, n: int) -> np.ndarray:
    """Up to n indices: the first image of each class, then the second of each, ..."""
    labels = np.asarray(labels)
    per_class = [np.flatnonzero(labels == k) for k in np.unique(labels)]
    picked = [int(p[r]) for r in range(max((len(p) for p in per_class), default=0)) for p in per_class if r < len(p)]
    return np.asarray(picked[:n], dtype=np.int64)


class StepTimer:
    """Seconds per step, logged as each starts and finishes (`prefix` names the stage in the log)."""

    def __init__(self, prefix: str = ""):
        self.seconds: dict[str, float] = {}
        self._prefix = f"{prefix}: " if prefix else ""

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        log.info("%s%s ...", self._prefix, name)
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        log.info("%s%s done in %.1f s", self._prefix, name, self.seconds[name])
