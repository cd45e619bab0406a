"""Where a layer's map positions sit on the image, and layer maps placed there.

A conv layer's position (i, j) is centred on the image at start + index * jump (per
axis; pixel p spans [p, p + 1)), from the kernels, strides and padding on the way
from the input. Resizing a map uniformly to the image instead assumes its positions
span the whole image, which they do not under "valid" convolutions and pooling:
AlexNet's conv1 at 64 px has centres 5.5 ... 57.5, not 2.3 ... 61.7, so a resized
Grad-CAM map is stretched outwards and a peak on an object's outline lands outside
the object (the pointing game counted it a miss). No Keras or scikit-image function
places maps by receptive-field geometry, hence this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convscope import keras_compat
from convscope.analysis.split_model import call_node, find_layer


@dataclass(frozen=True)
class Grid:
    """Image coordinates of a layer's positions: centre of (i, j) = (start[0] + i*jump[0], start[1] + j*jump[1])."""

    start: tuple[float, float] = (0.5, 0.5)
    jump: tuple[float, float] = (1.0, 1.0)


def _pairs(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _window(layer):
    """(kernel, strides, dilation, padding) of a layer that moves positions, else None."""
    kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if kernel is None or not hasattr(layer, "strides"):
        return None
    dilation = _pairs(getattr(layer, "dilation_rate", 1))
    return _pairs(kernel), _pairs(layer.strides), dilation, layer.padding


def _step(grid: Grid, layer, in_size: tuple[int, int]) -> Grid:
    """The grid after `layer`, given the grid and spatial size of its input."""
    if type(layer).__name__ == "ZeroPadding2D":
        (top, _), (left, _) = layer.padding
        return Grid((grid.start[0] - top * grid.jump[0], grid.start[1] - left * grid.jump[1]), grid.jump)
    window = _window(layer)
    if window is None:
        return grid
    kernel, strides, dilation, padding = window
    start, jump = [], []
    for axis in range(2):
        k = dilation[axis] * (kernel[axis] - 1) + 1
        s, n = strides[axis], in_size[axis]
        # TensorFlow's "same": total padding max((out - 1) * s + k - n, 0), the smaller half first.
        pad = max((-(-n // s) - 1) * s + k - n, 0) // 2 if padding == "same" else 0
        start.append(grid.start[axis] + ((k - 1) / 2 - pad) * grid.jump[axis])
        jump.append(grid.jump[axis] * s)
    return Grid(tuple(start), tuple(jump))


def _chain(model, layer) -> list[tuple]:
    """(layer, its input's spatial size) from `model`'s input to `layer`, following the first
    input where an operation has several (the branches of a residual or inception block
    meet on one grid)."""
    chain, op = [], layer
    while type(op).__name__ != "InputLayer":
        inputs = call_node(model, op).input_tensors
        first = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        chain.append((op, tuple(int(d) for d in first.shape[1:3])))
        op = keras_compat.producing_operation(first)
    return chain[::-1]


def of_layer(model, layer_name: str) -> Grid:
    """The grid of `layer_name`'s output on the classifier's input image.

    Layers outside the model that holds the layer (augmentation, preprocessing) keep
    positions where they are, so the walk covers that model only.
    """
    path = find_layer(model, layer_name)
    grid = Grid()
    for layer, in_size in _chain(path[-2], path[-1]):
        grid = _step(grid, layer, in_size)
    return grid


def _coordinates(n_out: int, n_in: int, start: float, jump: float):
    """For each output pixel: the two map indices around it and the weight of the second."""
    u = np.clip((np.arange(n_out) + 0.5 - start) / jump, 0, n_in - 1)
    lo = np.floor(u).astype(int)
    return lo, np.minimum(lo + 1, n_in - 1), (u - lo).astype(np.float32)


def to_pixels(maps, grid: Grid, size) -> np.ndarray:
    """N x h x w layer maps bilinearly interpolated at each pixel's place on the grid (N x H x W).

    Pixels outside the outermost position centres take the edge values.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[1:] == tuple(size):
        return maps
    r0, r1, fr = _coordinates(size[0], maps.shape[1], grid.start[0], grid.jump[0])
    c0, c1, fc = _coordinates(size[1], maps.shape[2], grid.start[1], grid.jump[1])
    rows = maps[:, r0, :] * (1 - fr)[None, :, None] + maps[:, r1, :] * fr[None, :, None]
    return rows[:, :, c0] * (1 - fc)[None, None, :] + rows[:, :, c1] * fc[None, None, :]
