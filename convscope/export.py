"""Trained models for serving: Keras native (.keras) and TF SavedModel, checked against the original.

The exported graph is the classifier without its "augment" block: Keras'
SavedModel export traces the Random* layers as if training (measured: up to
0.3 difference in probability on Keras 3.15), and a served model must not
augment. Every other layer (preprocess, base, head) is the trained one, so a
client sends uint8-valued RGB images at the backbone's input size, as `prepare`
writes them.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from convscope import atomic, layout

log = logging.getLogger(__name__)
TOLERANCE = 1e-5  # max |probability difference| accepted between exported and original


def serving_model(model):
    """The classifier's layer chain with "augment" left out, in layers plain Keras knows.

    convscope's own layers (Preprocess, AlexNet's LocalResponseNormalization) become
    the same computation in keras.ops (build.preprocess, alexnet.lrn): a functional
    graph of Keras operations, so the saved model.keras loads with
    keras.saving.load_model where convscope is not installed. Weights are shared.
    """
    import keras

    inputs = keras.Input(shape=model.input_shape[1:], name="image", dtype="float32")
    x = inputs
    for layer in model.layers[1:]:
        if layer.name != "augment":
            x = layer(x)
    chain = keras.Model(inputs, x, name=f"{model.name}_serving")
    return keras.models.clone_model(chain, clone_function=lambda layer: layer, call_function=_plain, recursive=True)


def _plain(layer, *args, **kwargs):
    """clone_model's call of each layer: convscope's layers as keras.ops, the others as they are."""
    from convscope.models import alexnet, build

    if isinstance(layer, build.Preprocess):
        return build.preprocess(*args, mode=layer.mode, dtype=layer.compute_dtype)
    if isinstance(layer, alexnet.LocalResponseNormalization):
        return alexnet.lrn(*args, layer.depth_radius, layer.alpha, layer.beta, layer.bias)
    return layer(*args, **kwargs)


def _replace_dir(tmp: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    tmp.replace(target)


def export_model(*, model_path, out_dir, check_images: np.ndarray, batch_size: int = 32) -> dict:
    """Write model.keras, saved_model/ and export.json (the check) into out_dir; raise when they disagree."""
    import tensorflow as tf

    from convscope.models.build import load_model

    out = Path(out_dir)
    files = layout.ExportFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(model_path, compile=False)
    serving = serving_model(model)
    with atomic.path(files.keras) as tmp:
        serving.save(str(tmp))
    tmp_saved = out / ".tmp-saved_model"
    shutil.rmtree(tmp_saved, ignore_errors=True)
    serving.export(str(tmp_saved), format="tf_saved_model", verbose=False)
    _replace_dir(tmp_saved, files.saved_model)
    log.info("exported %s to %s (model.keras, saved_model/)", model_path, out)

    x = np.asarray(check_images, dtype="float32")
    want = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    saved = tf.saved_model.load(str(files.saved_model))  # kept: its functions reference its variables
    got = {
        "keras": np.asarray(load_model(files.keras, compile=False).predict(x, batch_size=batch_size, verbose=0)),
        "saved_model": np.concatenate(
            [np.asarray(saved.serve(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        ),
    }
    check = {
        "model": str(model_path),
        "images": int(len(x)),
        "signature": {"input": list(model.input_shape), "dtype": "float32, 0..255 RGB", "output": "probabilities"},
        "formats": {
            name: {
                "max_abs_diff": float(np.abs(pred - want).max()),
                "same_top1": bool((pred.argmax(1) == want.argmax(1)).all()),
            }
            for name, pred in got.items()
        },
    }
    atomic.write_json(files.check, check)
    bad = {k: v for k, v in check["formats"].items() if v["max_abs_diff"] > TOLERANCE or not v["same_top1"]}
    if bad:
        raise RuntimeError(f"{out}: exported model(s) {sorted(bad)} do not reproduce {model_path}: {bad}")
    return check
