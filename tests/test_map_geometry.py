"""Layer maps placed where their positions look: an impulse through real backbone layers.

With every kernel set to ones (biases zero), a single lit pixel lights exactly the
positions whose receptive field holds it; placed on the image by the layer's grid,
their map must be centred on that pixel. A uniform resize of the same map is not,
near the border, which is why the pointing game used to miss outlines.
"""

from __future__ import annotations

import numpy as np
import pytest

from convscope.analysis.explain import gradcam, map_geometry


def impulse_maps(backbone: str, layer: str, size: int, pixels: list[int]):
    import keras

    from convscope.models.build import build_classifier

    model = build_classifier(backbone, 2, input_size=size, weights="none", head="pooled", seed=0)
    base = model.get_layer("base")
    for w in base.weights:
        if w.path.endswith("kernel"):
            w.assign(np.ones(w.shape, "float32"))
        elif w.path.endswith("bias"):
            w.assign(np.zeros(w.shape, "float32"))
    probe = keras.Model(base.inputs, base.get_layer(layer).output)
    x = np.zeros((len(pixels), size, size, 3), "float32")
    for n, p in enumerate(pixels):
        x[n, p, p, :] = 1.0
    a = keras.ops.convert_to_numpy(probe(x))
    return (a.sum(axis=-1) > 1e-6).astype("float32"), map_geometry.of_layer(model, layer)


def centres(maps, start, jump) -> np.ndarray:
    """Mean image position (row, col) of each map's lit cells, cell i placed at start + i * jump."""
    rows, cols = np.mgrid[0 : maps.shape[1], 0 : maps.shape[2]]
    total = maps.sum(axis=(1, 2))
    where = [(maps * (start[a] + idx * jump[a])).sum(axis=(1, 2)) / total for a, idx in enumerate((rows, cols))]
    return np.stack(where, axis=1)


@pytest.mark.parametrize(
    ("backbone", "layer", "size"),
    [
        ("alexnet", "conv1", 64),  # valid 11x11/4
        ("alexnet", "conv2", 160),  # then valid pool 3x3/2 and a same conv (51 px fields: a larger image)
        ("resnet50", "pool1_pool", 64),  # ZeroPadding2D around valid conv and pool
        ("mobilenetv2", "block_2_add", 64),  # same and padded depthwise convs, a residual add
    ],
)
def test_grid_places_an_impulse_response_on_the_lit_pixel(backbone, layer, size):
    pixels = [size // 2 - 23, size // 2, size // 2 + 22]
    maps, grid = impulse_maps(backbone, layer, size, pixels)
    placed = centres(maps, grid.start, grid.jump)
    lit = np.array(pixels, float)[:, None] + 0.5
    assert np.abs(placed - lit).max() <= grid.jump[0] / 2, (grid, placed.round(1).tolist())


def test_uniform_resize_misplaces_valid_layers_near_the_border():
    maps, grid = impulse_maps("alexnet", "conv1", 64, [50])
    assert grid == map_geometry.Grid((5.5, 5.5), (4.0, 4.0))
    side = 64 / maps.shape[1]  # what a uniform resize assumes: cells tile the whole image
    placed = centres(maps, grid.start, grid.jump)[0]
    resized = centres(maps, (side / 2, side / 2), (side, side))[0]
    assert np.abs(placed - 50.5).max() <= 1.0
    assert np.abs(resized - 50.5).min() >= 2.0, resized
    # to_pixels puts the response where the grid says; the resize, where it assumes.
    pixels = map_geometry.to_pixels(maps, grid, (64, 64))[0]
    assert np.argmax(pixels.sum(axis=0)) in range(45, 54)
    assert abs(float(np.argmax(gradcam.upsample(maps, (64, 64))[0].sum(axis=0))) - 50) > 1


def test_to_pixels_keeps_pixel_maps_and_holds_edge_values():
    pixel_maps = np.random.default_rng(0).random((2, 8, 8)).astype("float32")
    np.testing.assert_array_equal(map_geometry.to_pixels(pixel_maps, map_geometry.Grid(), (8, 8)), pixel_maps)
    two = np.array([[[0.0, 1.0], [0.0, 1.0]]], "float32")  # centres at 2.5 and 6.5 on an 8-px image
    out = map_geometry.to_pixels(two, map_geometry.Grid((2.5, 2.5), (4.0, 4.0)), (8, 8))[0, 0]
    np.testing.assert_allclose(out, [0, 0, 0, 0.25, 0.5, 0.75, 1, 1], atol=1e-6)
