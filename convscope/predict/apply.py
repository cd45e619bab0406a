"""One trained model over a folder of new images: predictions.csv, Grad-CAM overlays, index.html.

Per-image results are cached under cache/{key}/ (key: the model file's SHA-256
and every setting that changes a result), so when the folder gains images the
rerun job decodes, predicts and explains only the new ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convscope import atomic, layout
from convscope.predict import images

log = logging.getLogger(__name__)

COLUMNS = ("file", "status", "reason", "rank", "class", "probability", "overlay")


@dataclass(frozen=True)
class Settings:
    """What changes a prediction or its overlay (convscope.predict.params.settings fills every field)."""

    size: int  # the backbone's input side (as prepare resized its data)
    policy: str  # prepare.resize
    max_pixels: int  # clean.max_pixels: the same decompression-bomb guard
    top_k: int  # predict.top_k
    gradcam: bool  # predict.gradcam
    batch_size: int  # predict.batch_size
    # The analysis' Grad-CAM layer: analysis.gradcam.layer, or "" for the deepest block end with
    # maps of at least min_map_side a side (convscope.analysis.explain.layer_choice).
    gradcam_layer: str
    min_map_side: int  # analysis.min_map_side


@dataclass(frozen=True)
class Predicted:
    """The model a predict job applies: its file, its run and the classes it predicts."""

    path: Path
    backbone: str
    run: str
    classes: tuple


@dataclass(frozen=True)
class Explainer:
    """Grad-CAM as the analysis computes it: at its layer, maps placed on the image by receptive field."""

    cut: object  # convscope.analysis.split_model.cut at `layer`
    layer: str
    grid: object  # convscope.analysis.explain.map_geometry.Grid of `layer`

    @classmethod
    def of(cls, model, backbone: str, settings: Settings) -> Explainer:
        from convscope import backbones as registry
        from convscope.analysis.explain import layer_choice, map_geometry
        from convscope.analysis.split_model import cut

        layer = settings.gradcam_layer or (
            layer_choice.gradcam_layer(model, registry.get(backbone), settings.min_map_side).name
        )
        return cls(cut(model, layer), layer, map_geometry.of_layer(model, layer))

    def maps(self, x, targets, n_classes: int, batch_size: int):
        """N x H x W Grad-CAM maps of `targets`, at image size."""
        from convscope.analysis.explain import gradcam, map_geometry

        cams = gradcam.gradcam(self.cut, x, targets, n_classes, batch_size=batch_size)["gradcam"]
        return map_geometry.to_pixels(cams, self.grid, x.shape[1:3])


class Cache:
    """cache/{key}/{sha256}.json per image; other keys (an older model or settings) are removed."""

    def __init__(self, root: Path, key: str):
        self.dir = Path(root) / key
        if Path(root).is_dir():
            for old in Path(root).iterdir():
                if old != self.dir:
                    shutil.rmtree(old, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)

    def get(self, sha: str) -> dict | None:
        path = layout.PredictFolder.cache_entry(self.dir, sha)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, sha: str, record: dict) -> None:
        atomic.write_bytes(layout.PredictFolder.cache_entry(self.dir, sha), json.dumps(record).encode())


def cache_key(model_path, settings: Settings, classes) -> str:
    h = hashlib.sha256()
    h.update(images.sha256_of(model_path).encode())
    h.update(json.dumps({"settings": asdict(settings), "classes": list(classes)}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _overlay_jpeg(pixels: np.ndarray, cam: np.ndarray) -> bytes:
    from PIL import Image

    from convscope.analysis import plots

    buf = io.BytesIO()
    Image.fromarray(plots.overlay(pixels, cam)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _predict_new(model, loaded: list[images.Loaded], classes, settings: Settings, out: Path) -> list[dict]:
    """Records for decodable images not in the cache: top-k and (optionally) a Grad-CAM overlay.

    model: (the classifier, its Explainer or None without overlays).
    """
    model, explainer = model
    x = np.stack([item.pixels for item in loaded]).astype("float32")
    probs = np.asarray(model.predict(x, batch_size=settings.batch_size, verbose=0), dtype=np.float64)
    order = np.argsort(-probs, axis=1)[:, : min(settings.top_k, len(classes))]
    cams = None
    if explainer is not None:
        cams = explainer.maps(x, order[:, 0], len(classes), settings.batch_size)
    records = []
    for i, item in enumerate(loaded):
        overlay = ""
        if cams is not None:
            overlay = layout.PredictFolder.overlay_name(item.sha256)
            atomic.write_bytes(out / overlay, _overlay_jpeg(item.pixels, cams[i]))
        top = [[classes[int(c)], round(float(probs[i, c]), 6)] for c in order[i]]
        records.append({"status": "ok", "reason": "", "top": top, "overlay": overlay})
    return records


def csv_rows(name: str, record: dict) -> list[dict]:
    if record["status"] != "ok":
        return [
            {
                "file": name,
                "status": record["status"],
                "reason": record["reason"],
                "rank": "",
                "class": "",
                "probability": "",
                "overlay": "",
            }
        ]
    return [
        {
            "file": name,
            "status": "ok",
            "reason": "",
            "rank": rank,
            "class": cls,
            "probability": prob,
            "overlay": record["overlay"],
        }
        for rank, (cls, prob) in enumerate(record["top"], start=1)
    ]


def _load(predicted: Predicted, settings: Settings):
    """(the classifier, its Explainer or None), after checking it predicts the config's classes."""
    from convscope.models.build import load_model

    model = load_model(predicted.path, compile=False)
    if model.output.shape[-1] != len(predicted.classes):
        raise ValueError(
            f"{predicted.path}: the model predicts {model.output.shape[-1]} classes, config has {list(predicted.classes)}"
        )
    explainer = Explainer.of(model, predicted.backbone, settings) if settings.gradcam else None
    if explainer is not None:
        log.info("Grad-CAM overlays at %s, placed by receptive field as in the analyses", explainer.layer)
    return model, explainer


def predict_folder(predicted: Predicted, folder, out_dir, settings: Settings) -> list:
    """Write predictions.csv and index.html (and overlays/) into out_dir; returns [(file, record)]."""
    from convscope.predict import page

    out, classes = Path(out_dir), list(predicted.classes)
    backbone, run, model_path = predicted.backbone, predicted.run, predicted.path
    files = images.listing(folder)
    model = _load(predicted, settings)
    cache = Cache(layout.PredictFolder(out).cache, cache_key(model_path, settings, classes))
    results: dict[str, dict] = {}
    pending: list[images.Loaded] = []
    for path in files:
        sha = images.sha256_of(path)
        record = cache.get(sha)
        if record is not None:
            results[path.name] = record
            continue
        item = images.load(path, settings.size, settings.policy, settings.max_pixels)
        if item.pixels is None:
            results[path.name] = {"status": "rejected", "reason": item.reason, "top": [], "overlay": ""}
            cache.put(sha, results[path.name])
            log.warning("%s: not an image this model can read (%s); reported in predictions.csv", path, item.reason)
        else:
            pending.append(item)
    log.info(
        "%s/%s: %d files, %d from the cache, %d to predict",
        backbone,
        run,
        len(files),
        len(files) - len(pending) - sum(r["status"] != "ok" for r in results.values()),
        len(pending),
    )
    for start in range(0, len(pending), settings.batch_size):
        batch = pending[start : start + settings.batch_size]
        for item, record in zip(batch, _predict_new(model, batch, classes, settings, out)):
            results[item.name] = record
            cache.put(item.sha256, record)
        log.info("predicted %d / %d new images", min(start + len(batch), len(pending)), len(pending))
    ordered = [(p.name, results[p.name]) for p in files]
    _drop_stale_overlays(out, {r["overlay"] for _, r in ordered})
    files_out = layout.PredictFolder(out)
    atomic.write_csv(files_out.predictions, [row for name, r in ordered for row in csv_rows(name, r)], COLUMNS)
    page_html = page.render(backbone, run, folder, ordered, table=files_out.predictions.name)
    atomic.write_bytes(files_out.page, page_html.encode("utf-8"))
    return ordered


def _drop_stale_overlays(out: Path, keep: set[str]) -> None:
    folder = layout.PredictFolder(out).overlays
    if folder.is_dir():
        for f in folder.iterdir():
            if f.relative_to(out).as_posix() not in keep:
                f.unlink()
