"""The explanation analyses of one model, as index.json sections.

`explain_model` is the entry the per-model orchestrator (convscope.analysis.run)
calls with the already loaded classifier and test set:

- Grad-CAM / Grad-CAM++ at the backbone's last conv layer (registry `last_conv`),
  occlusion sensitivity and saliency / SmoothGrad for sample test images,
  explaining the class the network predicted;
- feature visualizations of chosen channels;
- the change from the pretrained base (when `base_reference` is given);
- the checks: pointing game (images with an object box) and deletion curves
  of Grad-CAM(++), occlusion and saliency, explaining the true class.

Files go under out_dir/explain/; index items are relative to `root`
(default out_dir, the folder of index.json).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import backbones as registry
from convscope import records
from convscope.analysis import plots
from convscope.analysis.index import item, section
from convscope.analysis.steps import StepTimer, spread_over_classes

log = logging.getLogger(__name__)

# Keys of the analysis section this module owns (the others belong to run.py's analyses).
OWN_KEYS = ("gradcam", "occlusion", "saliency", "filter_vis", "change", "checks")


def resolve_options(options: dict | None) -> dict:
    """The config `analysis` section over its schema defaults (nested sections merged key by key)."""
    from convscope import config as cfg

    merged = cfg.merged("analysis", options, strict=True)
    merged.setdefault("seed", 0)
    return merged


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


def explain_model(model, backbone, data: dict, out_dir, options: dict | None = None, *, base_reference=None, root=None):
    """Run the explanation analyses of one classifier; returns index.json sections.

    model: the trained classifier (MODEL CONTRACT, nested "base"; flat models work too).
    backbone: registry name, or a convscope.backbones.Backbone (its last_conv is used).
    data: x (N x H x W x 3 uint8 test images), labels or y (N), probs (N x C),
        classes (names); optional boxes (N x 4, image pixels, NaN = none) or index
        (the prepared index.csv with box_* columns), sample (indices to show),
        base_reference (see below).
    options: the config `analysis` section (missing keys take the schema defaults).
    base_reference: the same backbone with the weights the run started from (a
        classifier or the bare base) for the change-from-pretrained section.
    """
    from convscope.analysis import filter_vis, gradcam, occlusion, saliency
    from convscope.analysis.split_model import cut

    opts = resolve_options(options)
    spec = _backbone_spec(backbone)
    out_dir = Path(out_dir)
    root = Path(root) if root is not None else out_dir
    folder = out_dir / "explain"
    folder.mkdir(parents=True, exist_ok=True)
    x = np.asarray(data["x"])
    labels = np.asarray(data["labels"] if data.get("labels") is not None else data["y"], dtype=np.int64)
    probs = np.asarray(data["probs"], dtype=np.float64)
    classes = list(data["classes"])
    preds = probs.argmax(axis=1)
    n_classes = probs.shape[1]
    size = x.shape[1:3]
    boxes = boxes_of(data, len(x))
    base_reference = base_reference if base_reference is not None else data.get("base_reference")
    bs = int(opts["batch_size"])
    seed = int(opts.get("seed") or 0)
    sample = (
        np.asarray(data["sample"])
        if data.get("sample") is not None
        else spread_over_classes(labels, opts["sample_images"])
    )
    timer = StepTimer("explain")  # seconds per step go to explain/timings.json
    sections = []

    gc_layer = opts["gradcam"]["layer"] or spec.last_conv
    gc_cut = cut(model, gc_layer)
    occ = opts["occlusion"]
    # Default 4 x 4 patches per image side at half-patch steps: 7 x 7 = 49 forward passes per image.
    patch = int(occ["patch"] or max(1, size[0] // 4))
    stride = int(occ["stride"] or max(1, patch // 2))

    def maps_for(idx, targets, smooth: bool):
        """Every enabled map kind for images idx, explaining `targets`; N x h x w each.

        smooth: include SmoothGrad (shown in the figures; the checks leave it out, as it
        costs `smoothgrad_samples` gradients per image)."""
        maps = {}
        if opts["gradcam"]["enabled"]:
            with timer(f"Grad-CAM ({len(idx)} images)"):
                maps.update(gradcam.gradcam(gc_cut, x[idx], targets, n_classes, batch_size=bs))
        if occ["enabled"]:
            with timer(f"occlusion ({len(idx)} images)"):
                maps["occlusion"] = occlusion.occlusion(
                    model, x[idx], targets, patch=patch, stride=stride, fill=occ["fill"], batch_size=bs
                )
        if opts["saliency"]["enabled"]:
            with timer(f"saliency ({len(idx)} images)"):
                maps["saliency"] = saliency.saliency(gc_cut, x[idx], targets, n_classes, batch_size=bs)
            if smooth:
                with timer(f"SmoothGrad ({len(idx)} images)"):
                    maps["smoothgrad"] = saliency.smoothgrad(
                        gc_cut,
                        x[idx],
                        targets,
                        n_classes,
                        samples=int(opts["saliency"]["smoothgrad_samples"]),
                        noise=float(opts["saliency"]["smoothgrad_noise"]),
                        batch_size=bs,
                        seed=seed,
                    )
        return maps

    # ---- maps of sample images, explaining the predicted class -------------------
    shown = maps_for(sample, preds[sample], smooth=True) if len(sample) else {}
    if shown:
        sections += _map_sections(
            shown, x, sample, labels, preds, probs, classes, folder, root, gc_layer, patch, stride, occ, opts
        )

    # ---- feature visualization and change from the pretrained base ---------------
    fv = opts["filter_vis"]
    do_change = opts["change"]["enabled"] and base_reference is not None
    if fv["enabled"] or do_change:
        fv_layer = fv["layer"] or spec.last_conv
        fv_cut = cut(model, fv_layer) if fv_layer != gc_layer else gc_cut
        channels = _channels(fv_cut, fv["channels"], x, bs, fv_layer)
        settings = filter_vis.Settings.from_options({**fv, "seed": seed})
        with timer(f"feature visualization ({len(channels)} channels of {fv_layer})"):
            ft_result = filter_vis.visualize(fv_cut.to_layer, channels, size=size, settings=settings)
        if fv["enabled"]:
            sections.append(_filter_section(ft_result, fv_layer, folder, root, settings))
        if do_change:
            with timer("change from the pretrained base"):
                sections.append(
                    _change_section(
                        model,
                        base_reference,
                        fv_cut,
                        fv_layer,
                        spec.last_conv,
                        channels,
                        x,
                        size,
                        settings,
                        opts["change"],
                        ft_result,
                        folder,
                        root,
                    )
                )
    if opts["change"]["enabled"] and base_reference is None:
        sections.append(_no_reference_section(folder, root))

    # ---- checks: pointing game and deletion curves on the true class -------------
    if opts["checks"]["enabled"]:
        ck = opts["checks"]
        with_box = np.isfinite(boxes).all(axis=1)
        # The images with a box when there are any (they feed both checks), spread over classes.
        pool = np.flatnonzero(with_box) if with_box.any() else np.arange(len(x))
        idx = pool[spread_over_classes(labels[pool], int(ck["max_images"]))]
        check_maps = maps_for(idx, labels[idx], smooth=False)
        if check_maps:
            sections.append(
                _checks_section(
                    model, check_maps, x, idx, labels, boxes, classes, size, ck, bs, seed, folder, root, timer
                )
            )
        else:
            log.warning("explain: checks enabled but every map kind (gradcam, occlusion, saliency) is disabled")
    (folder / "timings.json").write_text(json.dumps(timer.seconds, indent=1))
    return sections


def _channels(layer_cut, wanted, x, batch_size, layer):
    """Channel indices to visualise: a list as given, or a count = the most active on the test images."""
    from convscope.analysis.filter_vis import channel_means

    if isinstance(wanted, (list, tuple)):
        return [int(c) for c in wanted]
    mean = channel_means(layer_cut.to_layer, x[: min(len(x), 256)], batch_size).mean(axis=0)
    count = min(int(wanted), len(mean))
    chosen = np.argsort(-mean, kind="stable")[:count]
    log.info("explain: visualising the %d most active channels of %s: %s", count, layer, chosen.tolist())
    return chosen.tolist()


_MAP_TITLES = {
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "occlusion": "Occlusion",
    "saliency": "Saliency",
    "smoothgrad": "SmoothGrad",
}


def _as_rgb(m):
    unit = plots.to_unit(m)
    return plots.to_uint8(np.repeat(unit[..., None], 3, axis=-1))


def _map_sections(maps, x, sample, labels, preds, probs, classes, folder, root, layer, patch, stride, occ, opts):
    from convscope.analysis.checks import peaks

    size = x.shape[1:3]
    table = pd.DataFrame(
        {
            "row": sample,
            "true": [classes[k] for k in labels[sample]],
            "predicted": [classes[k] for k in preds[sample]],
            "probability": probs[sample, preds[sample]],
        }
    )
    for name, m in maps.items():
        p = peaks(m, size)
        table[f"{name}_peak_row"], table[f"{name}_peak_col"] = p[:, 0], p[:, 1]
    table_path = folder / "explained_samples.csv"
    table.to_csv(table_path, index=False)
    np.savez_compressed(folder / "maps.npz", rows=sample, **{k.replace("+", "p"): v for k, v in maps.items()})
    titles_img = [f"{classes[labels[i]]} -> {classes[preds[i]]} {probs[i, preds[i]]:.2f}" for i in sample]
    colors = ["black" if labels[i] == preds[i] else "red" for i in sample]
    sections = []

    def grid(kinds, path, overlay: bool, suptitle):
        panels, titles, tcolors = [], [], []
        for j, i in enumerate(sample):
            panels.append(x[i])
            titles.append(titles_img[j])
            tcolors.append(colors[j])
            for kind in kinds:
                m = maps[kind][j]
                panels.append(plots.overlay(x[i], m) if overlay else _as_rgb(plots.resize_map(m, size)))
                titles.append(_MAP_TITLES[kind])
                tcolors.append("black")
        return plots.image_grid(
            panels, path, titles=titles, ncols=1 + len(kinds), suptitle=suptitle, title_colors=tcolors
        )

    caption_rows = "Each row: a test image (true -> predicted class, its probability; red = mistake)"
    if "gradcam" in maps:
        path = grid(["gradcam", "gradcam++"], folder / "gradcam.png", True, f"Grad-CAM at {layer}")
        sections.append(
            section(
                "gradcam",
                "Grad-CAM and Grad-CAM++",
                [
                    item(
                        "image",
                        path,
                        f"{caption_rows}, then where the network looked for the predicted class: Grad-CAM and "
                        f"Grad-CAM++ at layer {layer}, red = strong evidence. Peaks per image in the table.",
                        table_path,
                        root=root,
                    )
                ],
            )
        )
    if "occlusion" in maps:
        path = grid(["occlusion"], folder / "occlusion.png", True, f"Occlusion {patch}px patches, stride {stride}")
        sections.append(
            section(
                "occlusion",
                "Occlusion sensitivity",
                [
                    item(
                        "image",
                        path,
                        f"{caption_rows}, then how much the predicted class's probability drops when a {patch} px "
                        f"patch (stride {stride}, filled with {occ['fill']}) covers each place; red = the network "
                        f"needs that region.",
                        table_path,
                        root=root,
                    )
                ],
            )
        )
    if "saliency" in maps:
        n = opts["saliency"]["smoothgrad_samples"]
        path = grid(["saliency", "smoothgrad"], folder / "saliency.png", False, "Input gradients")
        sections.append(
            section(
                "saliency",
                "Saliency and SmoothGrad",
                [
                    item(
                        "image",
                        path,
                        f"{caption_rows}, then |d score / d pixel| of the predicted class (bright = pixels whose "
                        f"change moves the score most), and SmoothGrad: the same averaged over {n} noisy copies.",
                        table_path,
                        root=root,
                    )
                ],
            )
        )
    return sections


def _filter_section(result, layer, folder, root, settings):
    table = pd.DataFrame(
        {
            "channel": result.channels,
            "start_activation": result.start,
            "final_activation": result.final,
            "pixel_std": result.pixel_std,
        }
    )
    csv = folder / "filter_vis.csv"
    table.to_csv(csv, index=False)
    titles = [f"ch {c}: {a:.2g}" for c, a in zip(result.channels, result.final)]
    path = plots.image_grid(result.images, folder / "filter_vis.png", titles=titles, suptitle=f"{layer}")
    param = "decorrelated Fourier" if settings.fourier else "pixel"
    return section(
        "filter_vis",
        "Feature visualization",
        [
            item(
                "image",
                path,
                f"Images optimised to excite single channels of {layer} ({settings.steps} steps of gradient ascent, "
                f"{param} parameterisation, random jitter ±{settings.jitter}px, scale ±{settings.scale:.0%}, rotation "
                f"±{settings.rotation:g}°, total-variation penalty {settings.tv_weight:g}). Title: channel and its mean "
                f"activation on the image; the table has its value on the gray starting image too.",
                csv,
                root=root,
            )
        ],
    )


def _no_reference_section(folder, root):
    note = folder / "change.json"
    note.write_text(
        json.dumps(
            {
                "note": "no base_reference was given to explain_model: the pretrained starting point of this run "
                "is unknown, so the change from it cannot be shown. Pass base_reference (the backbone built "
                "with the weights the run started from)."
            },
            indent=1,
        )
    )
    log.warning("explain: no base_reference, the change-from-pretrained section has only a note")
    return section(
        "change", "Change from the pretrained base", [item("json", note, "Why this section is empty.", note, root=root)]
    )


def _change_section(
    model, base_reference, layer_cut, layer, embed_layer, channels, x, size, settings, opts, ft_result, folder, root
):
    from convscope.analysis import change

    weights = pd.DataFrame(change.weight_change(model, base_reference))
    w_csv = folder / "weight_change.csv"
    weights.to_csv(w_csv, index=False)
    w_png = _bar(
        weights["layer"],
        weights["relative_change"],
        folder / "weight_change.png",
        "relative weight change ||W_ft - W_ref|| / ||W_ref||",
    )
    result = change.compare_channels(
        model,
        base_reference,
        layer,
        channels,
        x,
        embed_layer=embed_layer,
        size=size,
        settings=settings,
        gray_std=float(opts["gray_std"]),
        finetuned=ft_result,
        model_cut=layer_cut,
    )
    rows = pd.DataFrame(result["rows"])
    c_csv = folder / "change_channels.csv"
    rows.to_csv(c_csv, index=False)
    dead_json = folder / "dead_channels.json"
    dead_json.write_text(json.dumps({**result["dead"], "gray_std": opts["gray_std"]}, indent=1))
    panels, titles = [], []
    for k, r in rows.iterrows():
        panels += [result["reference"].images[k], result["finetuned"].images[k]]
        flag = lambda who: " dead" if r[f"{who}_dead"] else (" gray" if r[f"{who}_gray"] else "")  # noqa: E731
        titles += [
            f"ch {r['channel']} pretrained{flag('reference')}",
            f"fine-tuned cos {r['cosine_similarity']:.2f}{flag('finetuned')}",
        ]
    c_png = plots.image_grid(
        panels, folder / "change_channels.png", titles=titles, ncols=2, suptitle=f"{layer}: pretrained vs fine-tuned"
    )
    d = result["dead"]
    return section(
        "change",
        "Change from the pretrained base",
        [
            item(
                "image",
                c_png,
                f"Feature visualizations of the same channels of {layer} before (left, the weights the run started "
                f"from) and after fine-tuning (right); cos = cosine similarity of the two pictures' embeddings "
                f"(pretrained {embed_layer}, pooled): near 1 = the channel kept its feature. 'gray' = the picture "
                f"stayed flat (pixel std < {opts['gray_std']}), 'dead' = zero on every test image.",
                c_csv,
                root=root,
            ),
            item(
                "image",
                w_png,
                "How far each layer's weights moved from the starting point (0 = frozen or untouched).",
                w_csv,
                root=root,
            ),
            item(
                "json",
                dead_json,
                f"Channels of {layer} that are zero on all {d['test_images']} test images: "
                f"{len(d['reference_dead'])} of {d['channels']} before, {len(d['finetuned_dead'])} after fine-tuning.",
                dead_json,
                root=root,
            ),
        ],
    )


def _bar(labels, values, path, title):
    """Horizontal bars, one per label (many layers stay readable)."""
    import matplotlib.pyplot as plt

    labels = [str(v) for v in labels]
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.18 * len(labels)))
    ax.barh(range(len(labels)), np.asarray(values, dtype=np.float64))
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel(title)
    return plots.save_figure(fig, path)


def _pointing_plot(game, names, path):
    """Accuracy per method on all boxed images and on the off-centre ones, with both baselines."""
    import matplotlib.pyplot as plt

    pos = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(names), 3.5))
    ax.bar(pos - 0.2, [game["methods"][n]["accuracy"] for n in names], 0.4, label=f"all ({game['images']})")
    off = [game["methods"][n]["off_centre_accuracy"] for n in names]
    if game["off_centre_images"]:
        ax.bar(pos + 0.2, off, 0.4, alpha=0.5, label=f"off-centre ({game['off_centre_images']})")
        ax.axhline(
            game["off_centre_chance"], color="red", ls=":", label=f"chance off-centre {game['off_centre_chance']:.2f}"
        )
    ax.axhline(game["chance"], color="red", ls="--", label=f"chance {game['chance']:.2f} (mean box area)")
    ax.axhline(game["centre_baseline"], color="gray", ls="--", label=f"always the centre {game['centre_baseline']:.2f}")
    ax.set_xticks(pos, [_MAP_TITLES[n] for n in names], rotation=30, ha="right")
    ax.set_ylabel("pointing accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    return plots.save_figure(fig, path)


def _checks_section(model, maps, x, idx, labels, boxes, classes, size, ck, bs, seed, folder, root, timer):
    import matplotlib.pyplot as plt

    from convscope.analysis import checks

    items = []
    with timer("pointing game"):
        game = checks.pointing_game(maps, boxes[idx], size, tolerance=float(ck["tolerance"]))
    p_json = folder / "pointing.json"
    summary = {k: v for k, v in game.items() if k not in ("hits", "rows")}
    p_json.write_text(json.dumps(summary, indent=1))
    if game["images"]:
        rows = idx[game["rows"]]
        table = pd.DataFrame({"row": rows, "true": [classes[k] for k in labels[rows]]})
        for name, h in game["hits"].items():
            table[f"{name}_hit"] = h
        p_csv = folder / "pointing.csv"
        table.to_csv(p_csv, index=False)
        names = list(game["methods"])
        p_png = _pointing_plot(game, names, folder / "pointing.png")
        acc = ", ".join(f"{_MAP_TITLES[n]} {game['methods'][n]['accuracy']:.2f}" for n in names)
        items.append(
            item(
                "image",
                p_png,
                f"Pointing game on {game['images']} test images with an object box: share of images whose "
                f"map maximum (true class) falls inside the box ({acc}); light bars: the "
                f"{game['off_centre_images']} images whose box misses the image centre. Dashes: chance (mean box "
                f"area fraction) and a map that always points at the centre.",
                p_csv,
                root=root,
            )
        )
        items.append(item("json", p_json, "Pointing-game accuracy per method and chance level.", p_json, root=root))
    else:
        items.append(
            item(
                "json",
                p_json,
                "No test image has an object box, so the pointing game was not played "
                "(boxes come with the synthetic source).",
                p_json,
                root=root,
            )
        )
    with timer("deletion curves"):
        fractions, curves = checks.deletion_curves(
            model, x[idx], labels[idx], maps, steps=int(ck["deletion_steps"]), batch_size=bs, seed=seed
        )
    aucs = {name: float(checks.auc(fractions, c).mean()) for name, c in curves.items()}
    long = pd.DataFrame(
        [
            {"method": name, "fraction_deleted": f, "mean_probability": float(c[:, j].mean())}
            for name, c in curves.items()
            for j, f in enumerate(fractions)
        ]
    )
    d_csv = folder / "deletion.csv"
    long.to_csv(d_csv, index=False)
    d_json = folder / "deletion.json"
    d_json.write_text(json.dumps({"images": int(len(idx)), "steps": int(ck["deletion_steps"]), "auc": aucs}, indent=1))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, c in curves.items():
        label = f"{_MAP_TITLES.get(name, name)} (AUC {aucs[name]:.2f})"
        ax.plot(fractions, c.mean(axis=0), label=label, ls="--" if name == "random" else "-")
    ax.set_xlabel("fraction of pixels deleted (most salient first)")
    ax.set_ylabel("p(true class)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    d_png = plots.save_figure(fig, folder / "deletion.png")
    items.append(
        item(
            "image",
            d_png,
            f"Deletion curves on {len(idx)} test images: the true class's mean probability as the pixels "
            f"each map ranks highest are replaced by the image's mean colour. Lower area under the curve = "
            f"the map found the evidence faster; dashed = random pixel order.",
            d_csv,
            root=root,
        )
    )
    items.append(item("json", d_json, "Area under each deletion curve (mean over images).", d_json, root=root))
    return section(
        "explanation_checks", "Are the explanations right? Pointing game and deletion", items, group=records.CHECKS
    )
