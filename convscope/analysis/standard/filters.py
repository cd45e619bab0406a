"""First-layer filter weights drawn as an image grid (one tile per output channel)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import layout
from convscope.analysis import plots
from convscope.analysis.index import item, section

log = logging.getLogger(__name__)

TILE_MIN_PX = 24  # small kernels (3x3) are enlarged to at least this many pixels


def walk_layers(model):
    """Every layer of `model` in graph order, descending into nested models."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from walk_layers(layer)


def first_conv(base):
    """The first Conv2D (not depthwise/separable) of the base: it sees the pixels."""
    import keras

    for layer in walk_layers(base):
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(
            layer, (keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)
        ):
            return layer
    raise ValueError(f"model {base.name!r} has no Conv2D layer; nothing to draw as first-layer filters")


def filter_tiles(kernel: np.ndarray, *, bgr: bool = False) -> np.ndarray:
    """kernel (kh, kw, cin, cout) -> cout tiles in [0, 1], each scaled by its own min/max.

    With 3 input channels a tile is a colour image (channels flipped when the network
    sees BGR, so red looks red); otherwise the mean over input channels in grey.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    tiles = np.moveaxis(kernel, -1, 0)  # cout, kh, kw, cin
    if tiles.shape[-1] == 3:
        if bgr:
            tiles = tiles[..., ::-1]
    else:
        tiles = tiles.mean(axis=-1)
    return np.stack([plots.to_unit(t) for t in tiles])


def _filter_rows(kernel: np.ndarray, n: int, ncols: int, tile: tuple[int, int], pad: int) -> list[dict]:
    """One row per drawn filter: its weight statistics and where its tile is in filters.png."""
    th, tw = tile
    rows = []
    for i in range(n):
        r, c = divmod(i, ncols)
        w = kernel[..., i]
        rows.append(
            {
                "filter": i,
                "l2_norm": float(np.sqrt((w**2).sum())),
                "mean": float(w.mean()),
                "min": float(w.min()),
                "max": float(w.max()),
                # Where the tile is in filters.png (pixels), so it can be checked or cut out.
                "x0": pad + c * (tw + pad),
                "y0": pad + r * (th + pad),
                "x1": pad + c * (tw + pad) + tw,
                "y1": pad + r * (th + pad) + th,
            }
        )
    return rows


def _caption(layer_name: str, kernel_shape, n: int, frozen_at: str | None) -> str:
    kh, kw, cin, _ = kernel_shape
    colour = "colour (RGB)" if cin == 3 else f"grey (mean of {cin} input channels)"
    return (
        f"The {n} {kh}x{kw} filters of {layer_name}, the layer that looks at the pixels, drawn in "
        f"{colour}, each scaled to its own range. "
        + (
            f"This layer stayed frozen in training: these are the weights the run started from "
            f"({frozen_at}), not something it learned."
            if frozen_at
            else "Edges, colour blobs and gratings are typical of a well-trained network; noise means the "
            "layer learned little."
        )
    )


def first_layer_filters(base, out_dir, *, max_filters: int, bgr: bool = False, frozen_at: str | None = None) -> dict:
    """The first conv layer's filters as one mosaic; frozen_at: where its weights came from when
    the layer stayed frozen in training (then the caption says so instead of judging them)."""
    out_dir = Path(out_dir)
    layer = first_conv(base)
    kernel = np.asarray(layer.get_weights()[0])
    kh, kw, cin, cout = kernel.shape
    n = min(cout, max_filters)
    if n < cout:
        log.info("first-layer filters: drawing %d of %d (analysis.filters.max_filters)", n, cout)
    factor = max(1, math.ceil(TILE_MIN_PX / max(kh, kw)))
    tiles = filter_tiles(kernel[..., :n], bgr=bgr)
    big = np.stack([plots.upscale(plots.to_uint8(t), factor) for t in tiles])
    ncols = math.ceil(math.sqrt(n))
    pad = 2
    png = plots.save_png(plots.mosaic(big, ncols=ncols, pad=pad), layout.AnalysisFolder(out_dir).filters_png)
    csv = layout.AnalysisFolder(out_dir).filters_csv
    pd.DataFrame(_filter_rows(kernel, n, ncols, big.shape[1:3], pad)).to_csv(csv, index=False)
    log.info("first-layer filters: layer %s, kernel %s", layer.name, kernel.shape)
    caption = _caption(layer.name, kernel.shape, n, frozen_at)
    return section("filters", "First-layer filters", [item("image", png, caption, csv, root=out_dir)])
