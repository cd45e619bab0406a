"""Explanation maps of one classifier, method by method: the registry.

Every method is one `Method` entry in METHODS: its name (the key of its maps in
every dict, file and table), panel title, one-line caption, the figure it is drawn
in, the config switch that enables it, and one builder `compute(batch) -> N x h x w`.
Adding a method = one builder function + one entry. The builders share a `Batch`:
the activations and gradients at the explained layer are computed once per batch
of images (lazily) and every CAM is a closed form of them.

Files, figures and captions of the maps are written by convscope.analysis.explain.figures.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from convscope.analysis.explain import cams, gradcam, integrated_gradients, map_geometry, occlusion, saliency

log = logging.getLogger(__name__)


@dataclass
class MapContext:
    """What every builder reads: the loaded model, its cut at the explained layer, settings."""

    model: object  # the classifier (images in, probabilities out)
    cut: object  # split_model.cut(model, layer)
    layer: str
    n_classes: int
    opts: dict  # the resolved config `analysis` section
    patch: int  # occlusion patch and stride in pixels
    stride: int
    timer: Callable = None  # context manager factory timer(name), optional
    grid: object = None  # map_geometry.Grid of the layer: layer maps are placed on the image by it

    @property
    def batch_size(self) -> int:
        return int(self.opts["batch_size"])

    @property
    def seed(self) -> int:
        return int(self.opts.get("seed") or 0)


@dataclass
class Batch:
    """Images to explain and the class explained per image; shared intermediate results."""

    ctx: MapContext
    images: np.ndarray
    targets: np.ndarray
    notes: dict = field(default_factory=dict)  # per-method diagnostics (e.g. IG completeness)

    @functools.cached_property
    def layer(self):
        """(activations, gradients of the target logits w.r.t. them) at the explained layer."""
        c = self.ctx
        return gradcam.layer_gradients(c.cut, self.images, self.targets, c.n_classes, batch_size=c.batch_size)

    @functools.cached_property
    def cams(self) -> dict:
        return gradcam.cams_from(*self.layer)


@dataclass(frozen=True)
class Method:
    name: str
    title: str
    caption: str  # one line: what the map shows
    figure: str  # methods with the same figure are drawn side by side in one section
    enabled: Callable[[dict], bool]
    compute: Callable[[Batch], np.ndarray]
    overlay: bool = True  # drawn over the image (else as a grey map of its own)
    in_checks: bool = True  # SmoothGrad is shown only: `smoothgrad_samples` gradients per image


def _switch(section: str) -> Callable[[dict], bool]:
    return lambda opts: bool(opts[section]["enabled"])


def _method(name: str) -> Callable[[dict], bool]:
    return lambda opts: bool(opts["methods"][name])


def _occlusion(b: Batch) -> np.ndarray:
    c = b.ctx
    patches = occlusion.Patches(c.patch, c.stride, c.opts["occlusion"]["fill"])
    return occlusion.occlusion(c.model, b.images, b.targets, patches, batch_size=c.batch_size)


def _smoothgrad(b: Batch) -> np.ndarray:
    c, s = b.ctx, b.ctx.opts["saliency"]
    settings = saliency.SmoothGrad(int(s["smoothgrad_samples"]), float(s["smoothgrad_noise"]), c.seed)
    return saliency.smoothgrad(c.cut, b.images, b.targets, c.n_classes, settings, batch_size=c.batch_size)


def _scorecam(b: Batch) -> np.ndarray:
    c = b.ctx
    channels = c.opts["scorecam"]["channels"]
    return cams.scorecam(c.model, b.layer[0], b.images, b.targets, channels=channels, batch_size=c.batch_size)


def _integrated_gradients(b: Batch) -> np.ndarray:
    c = b.ctx
    ig = integrated_gradients.integrated_gradients(
        c.cut,
        b.images,
        b.targets,
        c.n_classes,
        steps=int(c.opts["integrated_gradients"]["steps"]),
        batch_size=c.batch_size,
    )
    b.notes["integrated_gradients"] = ig.completeness_error()
    return ig.map


_CAM = "at the explained conv layer for the explained class; red = strong evidence"
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "gradcam",
            "Grad-CAM",
            f"Activations weighted by their mean gradient {_CAM}.",
            "gradcam",
            _switch("gradcam"),
            lambda b: b.cams["gradcam"],
        ),
        Method(
            "gradcam++",
            "Grad-CAM++",
            f"Like Grad-CAM with positive gradients weighted per position {_CAM}.",
            "gradcam",
            _switch("gradcam"),
            lambda b: b.cams["gradcam++"],
        ),
        Method(
            "hirescam",
            "HiResCAM",
            f"Gradient times activation per position, summed over channels {_CAM}.",
            "cams",
            _method("hirescam"),
            lambda b: cams.hirescam(*b.layer),
        ),
        Method(
            "xgradcam",
            "XGradCAM",
            f"Activations weighted by their activation-normalised gradient {_CAM}.",
            "cams",
            _method("xgradcam"),
            lambda b: cams.xgradcam(*b.layer),
        ),
        Method(
            "layercam",
            "LayerCAM",
            f"Positive gradient times activation per position {_CAM}.",
            "cams",
            _method("layercam"),
            lambda b: cams.layercam(*b.layer),
        ),
        Method(
            "eigencam",
            "EigenCAM",
            "The first principal component of the layer's activations: what the "
            "layer responds to most, whatever the class.",
            "cams",
            _method("eigencam"),
            lambda b: cams.eigencam(b.layer[0]),
        ),
        Method(
            "scorecam",
            "Score-CAM",
            "Channels weighted by the class probability of the image masked with each channel (no gradients).",
            "cams",
            _method("scorecam"),
            _scorecam,
        ),
        Method(
            "occlusion",
            "Occlusion",
            "Drop of the class probability when a patch covers each place.",
            "occlusion",
            _switch("occlusion"),
            _occlusion,
        ),
        Method(
            "saliency",
            "Saliency",
            "|d score / d pixel|: pixels whose change moves the class score most.",
            "saliency",
            _switch("saliency"),
            lambda b: saliency.saliency(b.ctx.cut, b.images, b.targets, b.ctx.n_classes, batch_size=b.ctx.batch_size),
            overlay=False,
        ),
        Method(
            "smoothgrad",
            "SmoothGrad",
            "Saliency averaged over noisy copies of the image.",
            "saliency",
            _switch("saliency"),
            _smoothgrad,
            overlay=False,
            in_checks=False,
        ),
        Method(
            "integrated_gradients",
            "Integrated Gradients",
            "Pixel times gradient integrated from a black image: each pixel's share of the class score.",
            "saliency",
            _method("integrated_gradients"),
            _integrated_gradients,
            overlay=False,
        ),
    )
}


def enabled(opts: dict, *, checks: bool = False) -> list[str]:
    """Names of the enabled methods in registry order (checks=True: those the checks score)."""
    return [m.name for m in METHODS.values() if m.enabled(opts) and (m.in_checks or not checks)]


def compute_maps(ctx: MapContext, images, targets, names) -> tuple[dict, dict]:
    """({method: N x H x W maps}, {method: diagnostics}) of `names` for images, explaining `targets`.

    Maps at the layer's resolution are placed on the image's pixels by ctx.grid (see
    convscope.analysis.explain.map_geometry), so every consumer reads pixel maps.
    """
    batch = Batch(ctx, np.asarray(images), np.asarray(targets, np.int64))
    size = batch.images.shape[1:3]
    maps = {}
    for name in names:
        if ctx.timer is None:
            maps[name] = METHODS[name].compute(batch)
        else:
            with ctx.timer(f"{METHODS[name].title} ({len(batch.images)} images)"):
                maps[name] = METHODS[name].compute(batch)
        if ctx.grid is not None:
            maps[name] = map_geometry.to_pixels(maps[name], ctx.grid, size)
    return maps, batch.notes
