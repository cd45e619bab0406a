"""Activation grids: what sample images look like inside the base at early, middle and late layers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import layout
from convscope.analysis import plots
from convscope.analysis.explain import layer_choice
from convscope.analysis.index import item, section
from convscope.analysis.steps import Labelled

log = logging.getLogger(__name__)


def spatial_layers(base) -> list[str]:
    """Names of the base's layers with 4-D (batch, h, w, c) outputs, in graph order."""
    return [m.name for m in layer_choice.spatial_layers(base)]


def resolve_layers(base, wanted, min_side: int) -> list[str]:
    """Config entries -> layer names: a string is a layer name, a number in [0, 1] a relative
    depth among the layers whose maps are readable (convscope.analysis.explain.layer_choice)."""
    return [m.name for m in layer_choice.activation_layers(base, wanted, min_side)]


def layer_activations(model, base, images: np.ndarray, names: list[str], batch_size: int = 64) -> list[np.ndarray]:
    """Activations of `names` inside the nested base for uint8 images, in one batched pass.

    A model from base.inputs to the chosen layers is built inside the base's own graph
    (reaching into a nested model from the outer one is not connected, see NOTES),
    behind the classifier's own preprocess layer.
    """
    import keras

    probe = keras.Model(base.inputs, [base.get_layer(n).output for n in names])
    image = keras.Input(shape=tuple(np.asarray(images).shape[1:]), name="image")
    viewer = keras.Model(image, probe(model.get_layer("preprocess")(image)))
    outs = viewer.predict(np.asarray(images), batch_size=batch_size, verbose=0)
    if len(names) == 1:
        outs = [outs]
    return [np.asarray(o, dtype=np.float32) for o in outs]


@dataclass(frozen=True)
class ActivationOptions:
    """Config analysis.activations (layers, channels) with the batch size and min_map_side."""

    layers: tuple | list  # names or relative depths (resolve_layers)
    channels: int  # the most active channels shown per layer
    batch_size: int
    min_side: int  # smallest readable map side (analysis.min_map_side; layer_choice)


def top_channels(a: np.ndarray, count: int) -> np.ndarray:
    """The same channels for every image (the most active on average) so rows compare."""
    return np.argsort(-a.mean(axis=(1, 2)).mean(axis=0), kind="stable")[: min(count, a.shape[-1])]


def _layer_tiles(a, data: Labelled, sample, top, where: tuple[str, int]):
    """Tiles and titles of one layer's grid (each image, then its channels) and its table rows."""
    name, depth = where
    imgs = np.asarray(data.images)[sample]
    mean = a.mean(axis=(1, 2))  # images x channels
    tiles, titles, rows = [], [], []
    for j, i in enumerate(sample):
        tiles.append(imgs[j])
        titles.append(f"{data.classes[data.labels[i]]} #{i}")
        for ch in top:
            tiles.append(plots.to_unit(a[j, :, :, ch]))
            titles.append(f"ch {ch}")
            rows.append(
                {
                    "layer": name,
                    "depth": depth,
                    "image_row": int(i),
                    "channel": int(ch),
                    "mean": float(mean[j, ch]),
                    "max": float(a[j, :, :, ch].max()),
                }
            )
    return tiles, titles, rows


def _layer_item(a, name: str, depth: int, top, figure: tuple[list, list], out_dir: Path) -> dict:
    tiles, titles = figure
    png = plots.image_grid(
        tiles,
        layout.AnalysisFolder(out_dir).activations_png(depth, name),
        titles=titles,
        style=plots.GridStyle(
            ncols=len(top) + 1,
            cmap="viridis",
            suptitle=f"{name}: {a.shape[1]}x{a.shape[2]}x{a.shape[3]} activations",
        ),
    )
    return item(
        "image",
        png,
        f"Layer {name} ({a.shape[1]}x{a.shape[2]} positions, {a.shape[3]} channels): each row is a test "
        f"image followed by its {len(top)} most active channels (bright = strong response). Early "
        "layers respond to edges and colours, late ones to object parts.",
        layout.AnalysisFolder(out_dir).activations_csv,
        root=out_dir,
    )


def activation_grids(model, base, data: Labelled, sample, out_dir, options: ActivationOptions) -> dict:
    out_dir = Path(out_dir)
    sample = np.asarray(sample)
    names = resolve_layers(base, options.layers, options.min_side)
    acts = layer_activations(model, base, np.asarray(data.images)[sample], names, options.batch_size)
    items, rows = [], []
    for depth, (name, a) in enumerate(zip(names, acts)):
        top = top_channels(a, options.channels)
        tiles, titles, layer_rows = _layer_tiles(a, data, sample, top, (name, depth))
        rows += layer_rows
        items.append(_layer_item(a, name, depth, top, (tiles, titles), out_dir))
    pd.DataFrame(rows).to_csv(layout.AnalysisFolder(out_dir).activations_csv, index=False)
    log.info("activations: layers %s for %d images", names, len(sample))
    return section("activations", "Activations inside the base", items)
