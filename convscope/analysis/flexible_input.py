"""An image -> activation model rebuilt to accept images of any size, on the same layers.

Feature visualisation optimises images whose objective is a channel's spatial
mean, which needs no native-size input (Lucid optimises 128 px images), and at
a backbone's native size it is the costliest analysis on a CPU. A built Keras
functional model has a fixed input shape, and Keras has no "change the input
shape" API for it. Calling the model (or its nested "base" model) on a tensor
of another size fails its input-spec check, and `clone_model(...,
clone_function=lambda layer: layer)` keeps the layers but wraps each nested
level in a new model cut from intermediate tensors, which Keras re-roots on
fresh inputs (disconnected from the outer graph). So the graph is replayed by hand on
`keras.Input((None, None, 3))`: every leaf layer is called on the new tensors
(the same layer objects, so the same weights, nothing copied), and nested models
(the classifier's "augment" and "base", split_model's stages) are replayed
inline rather than called whole. Convolutions and poolings work at any size;
a layer tied to the native size (a Flatten before Dense) cannot, and the layers
feature visualisation looks at (conv layers) come before any such layer.
"""

from __future__ import annotations

import inspect
import weakref

from convscope import keras_compat

# The config key that sets the size the rebuilt model is used at (named in errors).
SIZE_KEY = "analysis.filter_vis.size"

# One rebuild per model (the change analysis asks for the same cut twice): its compiled
# predict is reused; dropped with the model.
_REBUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _call(layer, *args, **kwargs):
    """The call of each node: inline nested models, call leaf layers in inference mode."""
    import keras

    if isinstance(layer, keras.Model):
        if len(args) != 1:
            raise ValueError(
                f"nested model {layer.name!r} is called with {len(args)} inputs; expected one image tensor"
            )
        return _replay(layer, args[0])
    # Augmentation and dropout must act as at inference, fixed in the recorded call:
    # a direct call of the new model (gradient ascent) passes no training flag.
    if "training" in inspect.signature(layer.call).parameters:
        kwargs = {**kwargs, "training": False}
    return layer(*args, **kwargs)


def _replay(model, tensor):
    """`model`'s graph applied to the symbolic `tensor`, leaf layer by leaf layer."""
    import keras

    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            tensor = _call(layer, tensor)
        return tensor
    outputs = keras.tree.flatten(keras_compat.run_graph(model, [tensor], _call))
    if len(outputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(outputs)} outputs; expected one activation")
    return outputs[0]


def rebuild(to_layer, name: str | None = None):
    """`to_layer` (a functional keras.Model, images N x H x W x C -> activations) for images of any size.

    The result shares every layer and variable with `to_layer`; on images of the native
    size it computes the same activations.
    """
    import keras

    inp = keras.Input((None, None, to_layer.inputs[0].shape[-1]), name=f"{to_layer.name}_any_size_input")
    return keras.Model(inp, _replay(to_layer, inp), name=name or f"{to_layer.name}_any_size")


def map_size(model, side: int) -> tuple | None:
    """(h, w) of `model`'s output map for a side x side input, None where the map would be empty."""
    import keras

    spec_in = keras.KerasTensor((1, side, side, model.inputs[0].shape[-1]), dtype=model.inputs[0].dtype)
    try:
        out = model.compute_output_spec(spec_in)
    except ValueError:  # a conv or pooling window larger than its input
        return None
    hw = tuple(out.shape[1:3])
    return hw if all(d is not None and d >= 1 for d in hw) else None


def smallest_side(model, upto: int) -> int | None:
    """The smallest input side <= upto at which `model` still has a map of at least 1 x 1."""
    if map_size(model, upto) is None:
        return None
    lo, hi = 1, upto  # the map's side grows with the input's: bisect
    while lo < hi:
        mid = (lo + hi) // 2
        if map_size(model, mid) is None:
            lo = mid + 1
        else:
            hi = mid
    return lo


def at_side(to_layer, side: int):
    """`to_layer` itself at its native input side, else its rebuild for `side` x `side` images.

    Raises ValueError naming analysis.filter_vis.size (and the smallest side that
    works) when the layer's map would be smaller than 1 x 1 at that side.
    """
    native = to_layer.inputs[0].shape[1:3]
    if tuple(native) == (side, side):
        return to_layer
    if len(to_layer.outputs[0].shape) != 4:
        raise ValueError(
            f"{to_layer.name!r} ends in a {len(to_layer.outputs[0].shape)}-D output, not a convolutional map: "
            f"only a conv layer can be visualised below the input size; set analysis.filter_vis.layer to one, "
            f"or {SIZE_KEY} to null"
        )
    flexible = _REBUILT.get(to_layer)
    if flexible is None:
        flexible = _REBUILT[to_layer] = rebuild(to_layer)
    if map_size(flexible, side) is None:
        smallest = smallest_side(flexible, max([d for d in native if d is not None], default=1024))
        raise ValueError(
            f"config key {SIZE_KEY}: at {side} px the output of {to_layer.name!r} would be smaller than 1 x 1; "
            f"set it to at least {smallest} px (or null for the network's input size)"
        )
    return flexible
