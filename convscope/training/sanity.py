"""Pretrained sanity check: ImageNet top-5 of the unmodified network for sample images.

If ImageNet weights loaded correctly, the original 1000-class network names
plausible ImageNet classes for the user's images (a cat photo -> "tabby",
"Egyptian_cat"). Garbage here means wrong weights or wrong preprocessing,
before any fine-tuning hides it. Runs only for backbones whose weights are
"imagenet"; the labels come from keras.applications' decode_predictions,
which downloads imagenet_class_index.json into the Keras cache once.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass

import numpy as np

from convscope import atomic, keras_compat

log = logging.getLogger(__name__)

CSV_COLUMNS = ("image", "file", "true_class", "rank", "wnid", "imagenet_label", "probability")


class SanityError(RuntimeError):
    """The sanity check cannot run; the message says why and what to do."""


def imagenet_model(backbone: str, options: dict):
    """The backbone as published: with its 1000-class top, ImageNet weights, native input size."""
    import keras

    from convscope import backbones as registry
    from convscope.models import weights as weights_lib

    spec = registry.get(backbone)
    if options.get("weights", "imagenet") != "imagenet":
        raise SanityError(
            f"the ImageNet sanity check needs backbones.{backbone}.weights: imagenet "
            f"(it is {options.get('weights')!r}); the workflow runs it only for ImageNet weights"
        )
    size = spec.input_size
    if spec.keras_app is None:  # ours: AlexNet with fc6-fc8 from bvlc_alexnet.npy
        from convscope.models.alexnet import AlexNet

        model = AlexNet(include_top=True, input_shape=(size, size, 3))
        weights_lib.load_alexnet_npy(
            model,
            weights_lib.alexnet_imagenet_path(),
            sha256=options.get("weights_sha256"),
        )
        return model
    try:
        return getattr(keras.applications, spec.keras_app)(include_top=True, weights="imagenet")
    except Exception as exc:  # download and cache failures come in many types
        raise SanityError(
            f"ImageNet weights with top for {backbone} (keras.applications.{spec.keras_app}) could not be "
            f"loaded: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}\n"
            f"If this machine is offline, fetch the '..._weights_tf_dim_ordering_tf_kernels.h5' file named "
            f"in the message above on a machine that is online and put it in {weights_lib.keras_models_dir()}, "
            "then run again."
        ) from None


def decode_top(preds, top: int = 5) -> list:
    """keras.applications decode_predictions, with an actionable error when its class index is missing."""
    from keras.applications.imagenet_utils import decode_predictions

    from convscope.models import weights as weights_lib

    try:
        return decode_predictions(np.asarray(preds), top=top)
    except ValueError:
        raise
    except Exception as exc:  # URL/HTTP/OS errors from keras.utils.get_file
        try:
            url = keras_compat.imagenet_class_index_url()
        except ImportError:  # pragma: no cover - private module moved
            url = "the URL in keras.applications.imagenet_utils.CLASS_INDEX_PATH"
        target = weights_lib.keras_models_dir() / "imagenet_class_index.json"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SanityError(
            f"ImageNet class names for the sanity check could not be downloaded: {reason}\n"
            f"decode_predictions needs imagenet_class_index.json. If this machine is offline, download\n"
            f"    {url}\non a machine that is online and put it at\n    {target}\n"
            "then run again (or set the backbone's weights to 'none' or a path: the check runs only for "
            "ImageNet weights)."
        ) from None


def top5_rows(model, images, names=None, true_classes=None, preprocess: str = "raw", top: int = 5) -> list[dict]:
    """Resize uint8 images to the model's input, preprocess, predict, decode: one row per (image, rank)."""
    import keras

    from convscope.models.build import Preprocess

    size = model.input_shape[1:3]
    x = keras.ops.image.resize(keras.ops.cast(np.asarray(images), "float32"), size, interpolation="bilinear")
    x = Preprocess(preprocess)(x)
    preds = keras.ops.convert_to_numpy(model.predict(x, verbose=0, batch_size=16))
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise SanityError(f"model {model.name!r} outputs {preds.shape[1:]} scores, not the 1000 ImageNet classes")
    decoded = decode_top(preds, top)
    rows = []
    for i, per_image in enumerate(decoded):
        for rank, (wnid, label, prob) in enumerate(per_image, start=1):
            rows.append(
                {
                    "image": i,
                    "file": names[i] if names is not None else "",
                    "true_class": true_classes[i] if true_classes is not None else "",
                    "rank": rank,
                    "wnid": wnid,
                    "imagenet_label": label,
                    "probability": round(float(prob), 6),
                }
            )
    return rows


def write_csv(rows: list[dict], path) -> None:
    atomic.write_csv(path, rows, CSV_COLUMNS)


@dataclass(frozen=True)
class Top5Settings:
    """What the sanity rule's output depends on: the backbone, its options, the backend, how many images."""

    backbone: str
    options: dict  # config backbones.<name> (its weights)
    backend: str  # train.backend
    n_images: int  # the first n test images (the sanity rule's)


def imagenet_top5(*, images, index_csv, out_csv, settings: Top5Settings, threads: int = 1) -> list[dict]:
    """The sanity rule: top-5 of the first n test images (R/sanity/{backbone}/imagenet_top5.csv)."""
    from convscope import backbones as registry
    from convscope import backend as backend_lib

    backend_lib.select(settings.backend, threads=threads)
    arr = np.load(images, mmap_mode="r")
    n = min(int(settings.n_images), len(arr))
    with open(index_csv, newline="") as f:
        index = list(csv.DictReader(f))[:n]
    model = imagenet_model(settings.backbone, settings.options)
    rows = top5_rows(
        model,
        np.asarray(arr[:n]),
        names=[r.get("file", "") for r in index],
        true_classes=[r.get("cls", "") for r in index],
        preprocess=registry.get(settings.backbone).preprocess,
    )
    write_csv(rows, out_csv)
    for r in rows:
        if r["rank"] == 1:
            log.info("%s (%s): %s %.3f", r["file"], r["true_class"], r["imagenet_label"], r["probability"])
    return rows
