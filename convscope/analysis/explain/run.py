"""The explanation analyses of one model, as index.json sections.

`explain_model` is the entry the per-model orchestrator (convscope.analysis.run)
calls with the already loaded classifier and test set:

- the maps of every enabled method (registry: convscope.analysis.explain.maps) at
  the backbone's last conv layer (registry `last_conv`) for sample test images,
  explaining the class the network predicted;
- feature visualizations of chosen channels;
- the change from the pretrained base (when `base_reference` is given);
- the trust checks, explaining the true class: pointing game (images with an object
  box), deletion and insertion curves against the random order, the parameter-
  randomisation sanity check, and the methods ranked by that evidence.

This module only orchestrates: maps are computed in explain_maps, the checks in
checks/sanity/ranking, files and figures written by explain_figures/trust_figures.
Files go under out_dir/explain/; index items are relative to out_dir (the folder
of index.json).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import backbones as registry
from convscope import layout
from convscope.analysis.explain import figures, map_geometry
from convscope.analysis.explain import maps as explain_maps
from convscope.analysis.steps import StepTimer, spread_over_classes
from convscope.analysis.trust import figures as trust

log = logging.getLogger(__name__)

# Keys of the analysis section this module owns (the others belong to run.py's analyses).
OWN_KEYS = (
    "gradcam",
    "occlusion",
    "saliency",
    "filter_vis",
    "change",
    "checks",
    "methods",
    "scorecam",
    "integrated_gradients",
    "sanity",
)


@dataclass
class ExplainInputs:
    """The test set as explain_model needs it (instead of a dict with alternative keys)."""

    x: np.ndarray  # N x H x W x 3 uint8 test images
    labels: np.ndarray  # N true classes
    probs: np.ndarray  # N x C the model's probabilities
    classes: list  # class names
    boxes: np.ndarray  # N x 4 object boxes (x0, y0, x1, y1 image pixels), NaN rows without
    sample: np.ndarray | None = None  # indices of the images shown in the figures
    base_reference: object = None  # the starting weights' model (change from the pretrained base)
    start: object = None  # change.Start: how the figures name those weights (None: "the starting weights")

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @classmethod
    def from_data(cls, data: dict) -> ExplainInputs:
        """From the orchestrator's dict: x, labels (or y), probs, classes; boxes or index; sample, base_reference."""
        x = np.asarray(data["x"])
        labels = data["labels"] if data.get("labels") is not None else data["y"]
        return cls(
            x=x,
            labels=np.asarray(labels, dtype=np.int64),
            probs=np.asarray(data["probs"], dtype=np.float64),
            classes=list(data["classes"]),
            boxes=boxes_of(data, len(x)),
            sample=None if data.get("sample") is None else np.asarray(data["sample"]),
            base_reference=data.get("base_reference"),
            start=data.get("start"),
        )


def boxes_of(data: dict, n: int) -> np.ndarray:
    """N x 4 boxes (x0, y0, x1, y1, image pixels; NaN rows without a box) from data["boxes"]
    or the prepared index's box_* columns."""
    if data.get("boxes") is not None:
        boxes = np.asarray(data["boxes"], dtype=np.float64)
    elif data.get("index") is not None and {"box_x0", "box_y0", "box_x1", "box_y1"} <= set(data["index"].columns):
        boxes = data["index"][["box_x0", "box_y0", "box_x1", "box_y1"]].apply(pd.to_numeric, errors="coerce").to_numpy()
    else:
        boxes = np.full((n, 4), np.nan)
    if boxes.shape != (n, 4):
        raise ValueError(f"object boxes have shape {boxes.shape}, expected ({n}, 4) for {n} test images")
    return boxes


def _backbone_spec(backbone):
    return backbone if isinstance(backbone, registry.Backbone) else registry.get(backbone)


def explain_model(model, backbone, data, out_dir, options: dict | None = None, *, base_reference=None):
    """Run the explanation analyses of one classifier; returns index.json sections.

    model: the trained classifier (MODEL CONTRACT, nested "base"; flat models work too).
    backbone: registry name, or a convscope.backbones.Backbone (its last_conv and blocks are used).
    data: an ExplainInputs, or a dict for ExplainInputs.from_data.
    options: the config `analysis` section (missing keys take the schema defaults).
    base_reference: the same backbone with the weights the run started from (a
        classifier or the bare base) for the change-from-pretrained section.
    """
    from convscope.analysis import options as analysis_options

    return explain_resolved(model, backbone, data, out_dir, analysis_options.resolve(options), base_reference)


def explain_resolved(model, backbone, data, out_dir, opts: dict, base_reference=None):
    """explain_model with `opts` already merged over the defaults (convscope.analysis.options.resolve)."""
    from convscope.analysis.explain import layer_choice
    from convscope.analysis.split_model import cut

    spec = _backbone_spec(backbone)
    inputs = data if isinstance(data, ExplainInputs) else ExplainInputs.from_data(data)
    if base_reference is not None:
        inputs.base_reference = base_reference
    out_dir = Path(out_dir)
    root = out_dir  # index items are relative to the folder of index.json
    folder = out_dir / "explain"
    folder.mkdir(parents=True, exist_ok=True)
    timer = StepTimer("explain")  # seconds per step go to explain/timings.json
    # Default: the deepest block end whose maps are readable (convscope.analysis.explain.layer_choice).
    layer = opts["gradcam"]["layer"] or layer_choice.gradcam_layer(model, spec, opts["min_map_side"]).name
    layer_map = layer_choice.describe(model, layer)
    size = inputs.x.shape[1:3]
    # Default 4 x 4 patches per image side at half-patch steps: 7 x 7 = 49 forward passes per image.
    patch = int(opts["occlusion"]["patch"] or max(1, size[0] // 4))
    stride = int(opts["occlusion"]["stride"] or max(1, patch // 2))
    ctx = explain_maps.MapContext(
        model,
        cut(model, layer),
        layer,
        inputs.probs.shape[1],
        opts,
        patch,
        stride,
        timer,
        map_geometry.of_layer(model, layer),
    )

    check = _check_maps(ctx, inputs) if opts["checks"]["enabled"] else None
    verdicts = None
    trust_sections = []
    if check is not None:
        trust_sections, verdicts = _trust_sections(ctx, spec, inputs, check, folder, root)
    sections = _sample_sections(ctx, inputs, verdicts, folder, root, layer_map.label() if layer_map else layer)
    sections += _feature_sections(ctx, spec, inputs, folder, root)
    sections += trust_sections
    layout.ExplainFolder(folder).timings.write_text(json.dumps(timer.seconds, indent=1))
    return sections


def _sample_sections(ctx, inputs, verdicts, folder, root, layer_label: str) -> list[dict]:
    """Maps of the sample images, explaining the predicted class, one section per figure group."""
    opts = ctx.opts
    sample = inputs.sample if inputs.sample is not None else spread_over_classes(inputs.labels, opts["sample_images"])
    names = explain_maps.enabled(opts)
    if not len(sample) or not names:
        return []
    maps, _ = explain_maps.compute_maps(ctx, inputs.x[sample], inputs.preds[sample], names)
    heading = {
        "layer": layer_label,  # name and map size, e.g. "conv2 (6x6 maps)"
        "patch": ctx.patch,
        "stride": ctx.stride,
        "fill": opts["occlusion"]["fill"],
        "smoothgrad_samples": opts["saliency"]["smoothgrad_samples"],
    }
    shown = replace(inputs, sample=sample)
    return figures.map_sections(maps, shown, folder, root, heading=heading, verdicts=verdicts)


def _feature_sections(ctx, spec, inputs, folder, root) -> list[dict]:
    """Feature visualization, and the change from the pretrained base (or a note why not)."""
    from convscope.analysis.split_model import cut
    from convscope.analysis.standard import change, filter_vis

    opts, fv, timer = ctx.opts, ctx.opts["filter_vis"], ctx.timer
    x, ref = inputs.x, inputs.base_reference
    do_change = opts["change"]["enabled"] and ref is not None
    sections = []
    if fv["enabled"] or do_change:
        fv_layer = fv["layer"] or spec.last_conv
        fv_cut = cut(ctx.model, fv_layer) if fv_layer != ctx.layer else ctx.cut
        channels = _channels(fv_cut, fv["channels"], x, ctx.batch_size, fv_layer)
        settings = filter_vis.Settings.from_options({**fv, "seed": ctx.seed})
        side = settings.image_size(x.shape[1:3])[0]
        with timer(f"feature visualization ({len(channels)} channels of {fv_layer} at {side} px)"):
            ft_result = filter_vis.visualize(fv_cut.to_layer, channels, size=x.shape[1:3], settings=settings)
        if fv["enabled"]:
            sections.append(figures.filter_section(ft_result, fv_layer, folder, root, settings))
        if do_change:
            what = change.Comparison(
                fv_layer, channels, spec.last_conv, x.shape[1:3], settings, float(opts["change"]["gray_std"])
            )
            with timer("change from the pretrained base"):
                weights = change.weight_change(ctx.model, ref)
                result = change.compare_channels(ctx.model, ref, x, what, finetuned=ft_result, model_cut=fv_cut)
            sections.append(figures.change_section(result, weights, what, folder, root, inputs.start))
    if opts["change"]["enabled"] and ref is None:
        sections.append(figures.no_reference_section(folder, root, inputs.start))
    return sections


@dataclass
class _CheckMaps:
    idx: np.ndarray  # the checked test images
    maps: dict  # method -> maps of those images, explaining the true class
    notes: dict  # method -> diagnostics (IG completeness)


def _check_maps(ctx, inputs) -> _CheckMaps | None:
    names = explain_maps.enabled(ctx.opts, checks=True)
    if not names:
        log.warning("explain: checks enabled but every map method is disabled")
        return None
    with_box = np.isfinite(inputs.boxes).all(axis=1)
    # The images with a box when there are any (they feed every check), spread over classes.
    pool = np.flatnonzero(with_box) if with_box.any() else np.arange(len(inputs.x))
    idx = pool[spread_over_classes(inputs.labels[pool], int(ctx.opts["checks"]["max_images"]))]
    maps, notes = explain_maps.compute_maps(ctx, inputs.x[idx], inputs.labels[idx], names)
    return _CheckMaps(idx, maps, notes)


def _trust_sections(ctx, spec, inputs, check: _CheckMaps, folder, root) -> tuple[list[dict], dict | None]:
    """The checks, the sanity check and the ranking; returns (sections, sanity verdicts or None)."""
    from convscope.analysis.trust import checks, ranking

    ck, timer, idx = ctx.opts["checks"], ctx.timer, check.idx
    x, labels, size = inputs.x, inputs.labels, inputs.x.shape[1:3]
    with timer("pointing game"):
        game = checks.pointing_game(check.maps, inputs.boxes[idx], size, tolerance=float(ck["tolerance"]))
    # The curves (many forward passes per image) on the first curve_images of the checked images.
    k = min(len(idx), int(ck["curve_images"]))
    sub = spread_over_classes(labels[idx], k)
    with timer(f"deletion{' and insertion' if ck['insertion'] else ''} curves ({k} images)"):
        faith = checks.faithfulness(
            ctx.model,
            x[idx[sub]],
            labels[idx[sub]],
            {n: m[sub] for n, m in check.maps.items()},
            directions=("deletion", "insertion") if ck["insertion"] else ("deletion",),
            settings=checks.CurveSettings(steps=int(ck["deletion_steps"]), batch_size=ctx.batch_size, seed=ctx.seed),
        )
    extra = [_border_item(ctx, inputs, check, folder, root)]
    if "integrated_gradients" in check.notes:
        ig = ctx.opts["integrated_gradients"]
        extra.append(
            trust.completeness_item(
                check.notes["integrated_gradients"], float(ig["tolerance"]), int(ig["steps"]), folder, root
            )
        )
    sections = [
        trust.checks_section(
            trust.pointing_items(game, idx, labels, inputs.classes, folder, root),
            trust.faithfulness_items(faith, k, int(ck["deletion_steps"]), folder, root),
            extra,
        )
    ]
    verdicts = None
    if ctx.opts["sanity"]["enabled"]:
        with timer("randomisation sanity check"):
            result, stage_names = _sanity(ctx, spec, inputs, check)
        verdicts = result.verdicts
        sections.append(trust.sanity_section(result, stage_names, folder, root))
    rows = ranking.rank_methods(list(check.maps), faith, sanity=verdicts, pointing=game)
    sections.append(trust.ranking_section(rows, ranking.verdict_line(rows, figures.TITLES), folder, root))
    return sections, verdicts


def _border_item(ctx, inputs, check: _CheckMaps, folder, root) -> dict:
    """The border-mass check on the checked maps (no new forward pass): is a class decided from the border?"""
    from convscope.analysis.trust import border_mass

    ck = ctx.opts["checks"]
    with ctx.timer("border mass"):
        result = border_mass.check(
            check.maps, inputs.labels[check.idx], inputs.classes, float(ck["border"]), float(ck["border_share"])
        )
    return border_mass.write(result, folder, root)


def _sanity(ctx, spec, inputs, check: _CheckMaps):
    """The randomisation check on the first `sanity.images` checked images, reusing their trained maps."""
    from convscope.analysis.trust import sanity

    so = ctx.opts["sanity"]
    sub = spread_over_classes(inputs.labels[check.idx], int(so["images"]))
    idx = check.idx[sub]
    names = list(check.maps)
    stage_list = sanity.stages(
        sanity.head_layers(ctx.model), sanity.base_blocks(ctx.model, spec.blocks), so["blocks"], so["independent"]
    )

    def compute():
        return explain_maps.compute_maps(
            explain_maps.MapContext(**{**ctx.__dict__, "timer": None}), inputs.x[idx], inputs.labels[idx], names
        )[0]

    trained = {n: m[sub] for n, m in check.maps.items()}
    result = sanity.randomisation_check(
        stage_list, compute, trained, inputs.x.shape[1:3], threshold=float(so["threshold"]), seed=ctx.seed
    )
    return result, [f"{s.mode}: {s.name}" for s in stage_list]


def _channels(layer_cut, wanted, x, batch_size, layer):
    """Channel indices to visualise: a list as given, or a count = the most active on the test images."""
    from convscope.analysis.standard.filter_vis import channel_means

    if isinstance(wanted, (list, tuple)):
        return [int(c) for c in wanted]
    mean = channel_means(layer_cut.to_layer, x[: min(len(x), 256)], batch_size).mean(axis=0)
    count = min(int(wanted), len(mean))
    chosen = np.argsort(-mean, kind="stable")[:count]
    log.info("explain: visualising the %d most active channels of %s: %s", count, layer, chosen.tolist())
    return chosen.tolist()
