"""What fine-tuning changed in the backbone.

Compares the fine-tuned classifier with `base_reference`: the same backbone
with the weights the run started from (a classifier built like the run's, or
the bare base model). Three views:
- relative weight change per layer, ||W_ft - W_ref|| / ||W_ref|| over all of a
  layer's variables (BatchNorm statistics included);
- for chosen channels, feature visualizations of the reference and of the
  fine-tuned network side by side (at analysis.filter_vis.size), with the cosine
  similarity of the two pictures' embeddings (global-average-pooled last-conv
  activations of the reference network: one fixed feature space for both pictures);
- channels flagged "dead" (activation zero on every test image) and "gray"
  (the visualization stayed near its flat start: nothing to climb).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convscope.analysis.split_model import as_model, cut, find_layer
from convscope.analysis.standard.filter_vis import Settings, at_image_size, channel_means, visualize


@dataclass(frozen=True)
class Start:
    """How the figures name the weights a run started from and what it did to them."""

    title: str  # section title: "Change from the random initial weights"
    before: str  # panel label of the starting network: "random init"
    after: str  # panel label of the trained network: "trained"
    what: str  # the starting weights in a sentence: "the random weights it started from"
    training: str  # what moved them: "training from scratch"


def start_of(strategy: str | None, weights: str | None) -> Start:
    """The wording for a run of `strategy` whose base was built with weights option `weights`.

    A scratch run starts from random weights: "before and after fine-tuning" and
    "pretrained" would say something false about it.
    """
    if strategy == "scratch" or weights == "none":
        return Start(
            "Change from the random initial weights",
            "random init",
            "trained",
            "the random weights it started from",
            "training from scratch",
        )
    from pathlib import Path

    from convscope import layout

    if weights is not None and weights != "imagenet" and Path(weights).name == layout.PRETRAINED_BASE:
        weights = "pretrained"  # grid.backbone_options turned `pretrained` into the pretrain stage's file
    source = {
        None: "the starting weights",
        "imagenet": "the ImageNet weights",
        "pretrained": "the base pretrained on the source classes",
    }.get(weights, f"the weights file {weights}")
    label = {"imagenet": "ImageNet", "pretrained": "pretrained"}.get(weights, "start")
    return Start(f"Change from {source}", label, "fine-tuned", source, "fine-tuning")


def _nested_base(model):
    import keras

    for layer in model.layers:
        if layer.name == "base" and isinstance(layer, keras.Model):
            return layer
    return None


def weight_change(model, base_reference) -> list[dict]:
    """One row per layer with weights: relative change of the fine-tuned weights from the reference.

    Layers are matched by name inside the nested bases (or whole models when flat).
    """
    ft = _nested_base(model) or model
    ref = _nested_base(base_reference) or base_reference
    ref_layers = {layer.name: layer for layer in ref.layers}
    rows = []
    for layer in ft.layers:
        if not layer.weights:
            continue
        other = ref_layers.get(layer.name)
        if other is None or len(other.weights) != len(layer.weights):
            raise ValueError(
                f"layer {layer.name!r} of the fine-tuned base has no counterpart with the same variables in the "
                f"reference model {ref.name!r}; base_reference must be the same backbone as the run"
            )
        w_ft = [np.asarray(w.numpy() if hasattr(w, "numpy") else w, np.float64) for w in layer.weights]
        w_ref = [np.asarray(w.numpy() if hasattr(w, "numpy") else w, np.float64) for w in other.weights]
        diff = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(w_ft, w_ref)))
        norm = np.sqrt(sum((b**2).sum() for b in w_ref))
        rows.append(
            {
                "layer": layer.name,
                "params": int(sum(w.size for w in w_ft)),
                "trainable": bool(layer.trainable),
                "norm_reference": float(norm),
                "norm_difference": float(diff),
                "relative_change": float(diff / norm) if norm > 0 else float("inf") if diff > 0 else 0.0,
            }
        )
    return rows


def reference_to_layer(model, base_reference, layer: str, model_cut=None):
    """image -> activation of `layer` in the reference network.

    A reference classifier is cut like the model; a bare reference base gets the
    fine-tuned model's own layers in front of its base (augmentation and
    preprocessing, which have no weights to change). model_cut: the model's
    split_model.cut at `layer`, if already made.
    """
    if _nested_base(base_reference) is not None or _nested_base(model) is None:
        return cut(base_reference, layer).to_layer
    path = find_layer(model, layer)
    if len(path) < 3 or path[1].name != "base":
        raise ValueError(
            f"layer {layer!r} is not inside the nested base of {model.name!r}; cannot match it in a bare reference base"
        )
    pre = (model_cut or cut(model, layer)).before[0]
    inner = cut(base_reference, layer).to_layer
    shape = model.inputs[0].shape[1:]
    return as_model(lambda images: inner(pre(images, training=False), training=False), shape, f"reference_to_{layer}")


def dead_channels(to_layer, images, *, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(max |activation| per channel over the images and positions, dead flag per channel)."""
    peak = None
    # Chunks bound the memory of early layers' large activation maps.
    for s in range(0, len(images), 256):
        act = to_layer.predict(np.asarray(images[s : s + 256], np.float32), batch_size=batch_size, verbose=0)
        m = np.abs(act).max(axis=(0, 1, 2))
        peak = m if peak is None else np.maximum(peak, m)
    # "Zero" relative to the layer: float noise in a never-firing channel is not activity.
    dead = peak <= 1e-6 * max(float(peak.max()), 1e-12)
    return peak, dead


def cosine(a, b) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)


@dataclass(frozen=True)
class Comparison:
    """Which channels compare_channels pictures, and how its verdicts are drawn."""

    layer: str  # the layer whose channels are visualised
    channels: list  # channel indices of that layer
    embed_layer: str  # the reference network's layer whose pooled activations embed the pictures
    size: tuple  # (height, width) of the network's input; the pictures are settings.image_size(size)
    settings: Settings | None  # feature visualization settings (None: the schema's defaults)
    gray_std: float  # pixel std below which a picture counts as flat ("gray"): analysis.change.gray_std


def _channel_rows(what: Comparison, similarity, pictures: tuple, dead: tuple) -> list[dict]:
    """One row per channel: the similarity, both pictures' activation and flatness, both dead flags."""
    reference, finetuned = pictures
    ref_dead, ft_dead = dead
    rows = []
    for k, ch in enumerate(finetuned.channels):
        rows.append(
            {
                "channel": ch,
                "cosine_similarity": float(similarity[k]),
                "reference_activation": float(reference.final[k]),
                "finetuned_activation": float(finetuned.final[k]),
                "reference_pixel_std": float(reference.pixel_std[k]),
                "finetuned_pixel_std": float(finetuned.pixel_std[k]),
                "reference_gray": bool(reference.pixel_std[k] < what.gray_std),
                "finetuned_gray": bool(finetuned.pixel_std[k] < what.gray_std),
                "reference_dead": bool(ref_dead[ch]),
                "finetuned_dead": bool(ft_dead[ch]),
            }
        )
    return rows


def compare_channels(model, base_reference, images, what: Comparison, *, finetuned=None, model_cut=None) -> dict:
    """Visualize `what.channels` of `what.layer` in the reference and the fine-tuned network and compare.

    images: test images for the dead-channel check. `finetuned` may carry the fine-tuned
    network's filter_vis.Result for the same channels and settings (computed once), and
    `model_cut` its split_model.cut at the layer (each new cut compiles its own predict).
    Returns {"rows": per-channel dicts, "reference": Result, "finetuned": Result, "dead": {...}}.
    """
    layer, channels, settings = what.layer, what.channels, what.settings or Settings.from_options(None)
    model_cut = model_cut if model_cut is not None else cut(model, layer)
    ft_to = model_cut.to_layer
    ref_to = reference_to_layer(model, base_reference, layer, model_cut)
    same_size = finetuned is not None and finetuned.images.shape[1:3] == settings.image_size(what.size)
    if not same_size or list(finetuned.channels) != [int(c) for c in channels]:
        finetuned = visualize(ft_to, channels, size=what.size, settings=settings)
    reference = visualize(ref_to, channels, size=what.size, settings=settings)
    embed = what.embed_layer
    ref_embed = reference_to_layer(model, base_reference, embed) if embed != layer else ref_to
    # The pictures may be smaller than the input (analysis.filter_vis.size): embedded on the same layers.
    ref_embed = at_image_size(ref_embed, what.size, settings)
    similarity = cosine(channel_means(ref_embed, reference.images), channel_means(ref_embed, finetuned.images))
    _, ft_dead = dead_channels(ft_to, images)
    _, ref_dead = dead_channels(ref_to, images)
    rows = _channel_rows(what, similarity, (reference, finetuned), (ref_dead, ft_dead))
    dead = {
        "layer": layer,
        "channels": int(len(ft_dead)),
        "test_images": int(len(images)),
        "reference_dead": np.flatnonzero(ref_dead).tolist(),
        "finetuned_dead": np.flatnonzero(ft_dead).tolist(),
    }
    return {"rows": rows, "reference": reference, "finetuned": finetuned, "dead": dead}
