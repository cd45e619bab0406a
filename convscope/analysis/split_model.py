"""Cut a classifier at one layer: image -> activation and activation -> scores.

Grad-CAM needs the gradient of a class score with respect to the last conv
layer's activations, and feature visualization needs the activations of any
layer. In the classifier contract that layer sits inside the nested "base"
model, and Keras 3 cannot use a nested layer's output as an output of the outer
model ("Output ... is not connected to `inputs`"). So the cut is made level by
level: each model on the way to the layer is split into the part before the
tensor of interest and the part after it (Keras clones the graph between an
intermediate tensor and the outputs), and the halves are composed in order.
Works the same for a flat model, where the path has one level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from convscope import keras_compat


def find_layer(model, name: str) -> list:
    """The chain of models from `model` down to the layer `name`, ending with the layer.

    Searches nested models depth first; raises naming the layers it saw.
    """
    import keras

    def search(m):
        for layer in m.layers:
            if layer.name == name:
                return [m, layer]
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                found = search(layer)
                if found:
                    return [m, *found]
        return None

    path = search(model)
    if path is None:
        names = [layer.name for layer in model.layers]
        raise KeyError(
            f"layer {name!r} is not in model {model.name!r} or its nested models (top-level layers: {names}); "
            f"check last_conv/blocks of the backbone in convscope/backbones.py or the analysis layer setting"
        )
    return path


def _graph(model):
    # A Sequential keeps its graph in a functional model of its own.
    return getattr(model, "_functional", None) or model


def call_node(parent, child):
    """The node where `child` is called inside `parent`'s graph."""
    parent = _graph(parent)
    nodes = [n for n in keras_compat.call_nodes(parent) if n.operation is child]
    if len(nodes) != 1:
        raise ValueError(
            f"layer {child.name!r} is called {len(nodes)} times in model {parent.name!r}; "
            f"an activation can only be cut at a layer used once"
        )
    return nodes[0]


def _submodel(inputs, outputs, what: str):
    import keras

    if inputs is outputs:
        return lambda t, training=False: t
    try:
        return keras.Model(inputs, outputs)
    except ValueError as e:
        raise ValueError(
            f"cannot cut the model at {what}: the rest of the network needs tensors other than that "
            f"activation (a skip connection around it?); choose a layer every path goes through. Keras said: {e}"
        ) from e


def _single(tensors):
    if isinstance(tensors, (list, tuple)):
        if len(tensors) != 1:
            raise ValueError(f"expected a single-input/single-output model, got {len(tensors)} tensors")
        return tensors[0]
    return tensors


def _compose(stages):
    def run(x, training=False):
        for stage in stages:
            x = stage(x, training=False)
        return x

    return run


def as_model(fn, input_shape, name: str):
    """A callable on backend tensors as one functional keras.Model (compiled `predict`)."""
    import keras

    inp = keras.Input(shape=tuple(input_shape), name=f"{name}_input")
    return keras.Model(inp, fn(inp), name=name)


@dataclass(eq=False)  # compared by identity: compiled gradient functions are cached per cut
class Cut:
    """A model cut at one layer; the functions take and return backend tensors.

    to_layer(images) -> activation of the layer; images are float, uint8-valued
        (the classifier's own input, augmentation and preprocessing included).
        A keras.Model, so `to_layer.predict(x, batch_size=...)` runs compiled batches.
    from_layer(activation) -> the model's output (class probabilities).
    logits(activation) -> class scores before the final softmax (the output itself
        when the last layer has no softmax): Grad-CAM and saliency explain these,
        because a saturated softmax has near-zero gradients.
    path: names of the models from the outer model to the layer.
    """

    to_layer: Callable
    from_layer: Callable
    logits: Callable
    path: list[str]
    before: list  # stages of to_layer, outermost first (reused by change.py)
    variables: list  # the model's Keras variables (what the functions read)

    def class_score(self, activation, onehot):
        """Per-example logit of the class marked in `onehot` (N x classes), from the activation."""
        from keras import ops

        logits = self.logits(activation)
        return ops.sum(logits * ops.cast(onehot, logits.dtype), axis=-1)

    def input_score(self, images, onehot):
        """Per-example logit of the class marked in `onehot`, from the images."""
        return self.class_score(self.to_layer(images), onehot)


def _logit_stage(model):
    """(tensor feeding the last layer, function applying it without softmax) or None."""
    import keras
    from keras import ops

    out = _single(model.outputs)
    last = keras_compat.producing_operation(out)
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Dense) and activation is keras.activations.softmax:
        feed = _single(call_node(model, last).input_tensors)

        def dense(h):
            # the head's own dtype (float32 in the contract, also under mixed precision)
            z = ops.matmul(ops.cast(h, last.kernel.dtype), last.kernel)
            return z + last.bias if last.use_bias else z

        return feed, dense
    return None


def cut(model, layer_name: str) -> Cut:
    """Cut `model` at the layer named `layer_name` (top level or inside nested models)."""
    path = find_layer(model, layer_name)
    layer = path[-1]
    models = path[:-1]
    before, after = [], []
    # The innermost model: its input -> the layer's output -> its output.
    inner = models[-1]
    target = _single(call_node(inner, layer).output_tensors)
    before.append(_submodel(_single(inner.inputs), target, f"{inner.name}/{layer.name}"))
    after.append(_submodel(target, _single(inner.outputs), f"{inner.name}/{layer.name}"))
    logit_after = None
    # Walk outwards: in each parent, the nested child's call splits the parent in two.
    for parent, child in zip(reversed(models[:-1]), reversed(models[1:])):
        node = call_node(parent, child)
        child_in, child_out = _single(node.input_tensors), _single(node.output_tensors)
        before.insert(0, _submodel(_single(parent.inputs), child_in, f"{parent.name}/{child.name} input"))
        if parent is model:
            stage = _logit_stage(model)
            if stage is not None:
                feed, dense = stage
                tail = _submodel(child_out, feed, f"{parent.name}/{child.name} output")
                logit_after = [*after, tail, lambda h, training=False, dense=dense: dense(h)]
        after.append(_submodel(child_out, _single(parent.outputs), f"{parent.name}/{child.name} output"))
    if len(models) == 1:  # flat model: the layer is a top-level layer
        stage = _logit_stage(model)
        if stage is not None:
            feed, dense = stage
            logit_after = [_submodel(target, feed, f"{model.name}/{layer.name}"), lambda h, training=False: dense(h)]
    return Cut(
        to_layer=as_model(_compose(before), _single(model.inputs).shape[1:], f"to_{layer.name}"),
        from_layer=_compose(after),
        logits=_compose(logit_after or after),
        path=[m.name for m in path],
        before=before,
        variables=list(model.variables),
    )
