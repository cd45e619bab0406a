"""Which layers the per-image figures show: those whose maps are large enough to read.

At small inputs the last conv layer of a backbone can be a few positions wide (AlexNet's
conv5 is 2 x 2 at 64 px): its activation grids and Grad-CAM maps are then four blocks
each, which shows nothing. So by default activation grids and Grad-CAM use layers whose
maps are at least `min_side` positions on each side (config analysis.min_map_side),
and where the network has none, the layers with the largest maps. Layers named in the
config are used as given.

Grad-CAM needs a layer the whole network passes through (split_model.cut), so its
candidates are the registry's block ends and last_conv (convscope/backbones.py checks
that these are cut points); it takes the deepest readable one, since deeper layers
carry more class-specific evidence; block ends past last_conv (a pooling layer) are left
out, since they show last_conv's evidence on a coarser grid. Activation grids may show
any spatial layer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MapLayer:
    name: str
    height: int
    width: int
    depth: int  # position among the base's spatial layers (0 = first)

    @property
    def side(self) -> int:
        return min(self.height, self.width)

    def label(self) -> str:
        return f"{self.name} ({self.height}x{self.width} maps)"


def spatial_layers(base) -> list[MapLayer]:
    """The base's layers with 4-D (batch, h, w, c) outputs, in graph order."""
    found = []
    for layer in base.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # layers used more than once have no single output
            continue
        if len(shape) == 4 and shape[1] is not None and shape[2] is not None:
            found.append(MapLayer(layer.name, int(shape[1]), int(shape[2]), len(found)))
    return found


def readable(layers: list[MapLayer], min_side: int) -> list[MapLayer]:
    """Layers with maps of at least min_side a side; if none, the layers with the largest maps."""
    if not layers:
        return []
    big = [m for m in layers if m.side >= min_side]
    if big:
        return big
    largest = max(m.height * m.width for m in layers)
    return [m for m in layers if m.height * m.width == largest]


def activation_layers(base, wanted, min_side: int) -> list[MapLayer]:
    """Config entries -> layers: a string names a layer, a number in [0, 1] is a relative depth
    among the readable layers (0 = first, 1 = deepest readable)."""
    every = spatial_layers(base)
    if not every:
        raise ValueError(f"model {base.name!r} has no layers with spatial (4-D) outputs")
    by_name = {m.name: m for m in every}
    candidates = readable(every, min_side)
    chosen: list[MapLayer] = []
    for w in wanted:
        if isinstance(w, str):
            if w not in by_name:
                names = [m.name for m in every]
                raise ValueError(
                    f"config key analysis.activations.layers: {w!r} is not a spatial layer of {base.name!r}; "
                    f"choose among {names[:5]} ... {names[-5:]} ({len(names)} layers) or give a "
                    "fraction of depth between 0 and 1"
                )
            layer = by_name[w]
        else:
            # Half rounds up (Python's round() would send 0.5 of 2 layers to the first).
            layer = candidates[int(float(w) * (len(candidates) - 1) + 0.5)]
        if layer not in chosen:
            chosen.append(layer)
    return chosen


def _base_of(model):
    for layer in model.layers:
        if layer.name == "base" and hasattr(layer, "layers"):
            return layer
    return model


def gradcam_layer(model, spec, min_side: int) -> MapLayer:
    """The deepest readable cut point among the backbone's block ends and last_conv."""
    chosen, why = gradcam_choice(model, spec, min_side)
    if chosen.name != spec.last_conv:
        log.info("Grad-CAM at %s: %s", chosen.label(), why)
    return chosen


def gradcam_choice(model, spec, min_side: int = 7) -> tuple[MapLayer, str]:
    """gradcam_layer's choice and, in words, why (bench/rehearsal.py prints it)."""
    every = {m.name: m for m in spatial_layers(_base_of(model))}
    names = dict.fromkeys([*spec.blocks, spec.last_conv])
    last = every.get(spec.last_conv)
    # A block end past last_conv only pools it (VGG16's block5_pool: 7x7 of block5_conv3's
    # 14x14 at 224 px): the same evidence on a coarser grid, so it is never the choice.
    candidates = sorted(
        (every[n] for n in names if n in every and (last is None or every[n].depth <= last.depth)),
        key=lambda m: m.depth,
    )
    if not candidates:
        raise ValueError(
            f"backbone {spec.name!r}: none of its block ends or last_conv ({list(names)}) is a spatial layer of "
            f"{model.name!r}; set config key analysis.gradcam.layer"
        )
    chosen = readable(candidates, min_side)[-1]
    if chosen.name == spec.last_conv:
        why = f"last_conv, the deepest candidate, has maps of at least {min_side}x{min_side} (min_map_side)"
    elif chosen.side >= min_side:
        why = (
            f"last_conv {spec.last_conv} has {f'{last.height}x{last.width}' if last else 'no fixed'} maps, "
            f"below min_map_side {min_side}; "
            "this is the deepest block end at or above it"
        )
    else:
        why = f"no candidate reaches min_map_side {min_side}: the one with the largest maps"
    return chosen, why


def describe(model, name: str) -> MapLayer | None:
    """The MapLayer of a named layer of the base (None when it has no fixed spatial map)."""
    return {m.name: m for m in spatial_layers(_base_of(model))}.get(name)
