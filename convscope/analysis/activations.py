"""Activation grids: what sample images look like inside the base at early, middle and late layers."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from convscope.analysis import layer_choice, plots
from convscope.analysis.index import item, section

log = logging.getLogger(__name__)


def spatial_layers(base) -> list[str]:
    """Names of the base's layers with 4-D (batch, h, w, c) outputs, in graph order."""
    return [m.name for m in layer_choice.spatial_layers(base)]


def resolve_layers(base, wanted, min_side: int = 7) -> list[str]:
    """Config entries -> layer names: a string is a layer name, a number in [0, 1] a relative
    depth among the layers whose maps are readable (convscope.analysis.layer_choice)."""
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


def activation_grids(
    model,
    base,
    images,
    sample,
    classes,
    labels,
    out_dir,
    *,
    layers=(0.1, 0.5, 0.9),
    channels: int = 16,
    batch_size: int = 64,
    min_side: int = 7,
) -> dict:
    out_dir = Path(out_dir)
    sample = np.asarray(sample)
    names = resolve_layers(base, layers, min_side)
    imgs = np.asarray(images)[sample]
    acts = layer_activations(model, base, imgs, names, batch_size)
    items, rows = [], []
    for depth, (name, a) in enumerate(zip(names, acts)):
        mean = a.mean(axis=(1, 2))  # images x channels
        # The same channels for every image (the most active on average) so rows compare.
        top = np.argsort(-mean.mean(axis=0), kind="stable")[: min(channels, a.shape[-1])]
        tiles, titles = [], []
        for j, i in enumerate(sample):
            tiles.append(imgs[j])
            titles.append(f"{classes[labels[i]]} #{i}")
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
        png = plots.image_grid(
            tiles,
            out_dir / f"activations_{depth}_{name}.png",
            titles=titles,
            ncols=len(top) + 1,
            cmap="viridis",
            suptitle=f"{name}: {a.shape[1]}x{a.shape[2]}x{a.shape[3]} activations",
        )
        items.append(
            item(
                "image",
                png,
                f"Layer {name} ({a.shape[1]}x{a.shape[2]} positions, {a.shape[3]} channels): each row is a test "
                f"image followed by its {len(top)} most active channels (bright = strong response). Early "
                "layers respond to edges and colours, late ones to object parts.",
                out_dir / "activations.csv",
                root=out_dir,
            )
        )
    pd.DataFrame(rows).to_csv(out_dir / "activations.csv", index=False)
    log.info("activations: layers %s for %d images", names, len(sample))
    return section("activations", "Activations inside the base", items)
