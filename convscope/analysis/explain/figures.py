"""Files, figures and captions of the explanation analyses (the maps themselves: explain_maps).

One figure per group of methods (registry `figure`): each row a sample test image,
then one panel per method; every item names its data file and carries the sanity
badge of each method drawn in it (convscope.analysis.trust.sanity), which the report shows
next to the figure with the one-line reason of a failure.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from convscope import layout, records
from convscope.analysis import plots
from convscope.analysis.explain.maps import METHODS
from convscope.analysis.index import item, section

log = logging.getLogger(__name__)

TITLES = {name: m.title for name, m in METHODS.items()}
# Figure groups in the order they appear: (section id, section title, figure heading).
FIGURES = {
    "gradcam": ("Grad-CAM and Grad-CAM++", "Grad-CAM at {layer}"),
    "cams": ("More class-activation maps", "CAMs at {layer}"),
    "occlusion": ("Occlusion sensitivity", "Occlusion {patch}px patches, stride {stride}"),
    "saliency": ("Saliency, SmoothGrad and Integrated Gradients", "Input gradients"),
}


def badges(names, verdicts: dict | None) -> list[dict]:
    """Sanity badge per method drawn in a figure: {method, title, passed, note}; none when not run."""
    if not verdicts:
        return []
    return [
        {"method": n, "title": TITLES[n], "passed": verdicts[n]["passed"], "note": verdicts[n]["reason"]}
        for n in names
        if n in verdicts
    ]


def _as_rgb(m):
    unit = plots.to_unit(m)
    return plots.to_uint8(np.repeat(unit[..., None], 3, axis=-1))


def samples_table(maps, inputs, sample, folder):
    """explained_samples.csv (each sample's classes and every map's peak) and maps.npz."""
    from convscope.analysis.trust.checks import peaks

    size = inputs.x.shape[1:3]
    preds = inputs.preds
    table = pd.DataFrame(
        {
            "row": sample,
            "true": [inputs.classes[k] for k in inputs.labels[sample]],
            "predicted": [inputs.classes[k] for k in preds[sample]],
            "probability": inputs.probs[sample, preds[sample]],
        }
    )
    for name, m in maps.items():
        p = peaks(m, size)
        table[f"{name}_peak_row"], table[f"{name}_peak_col"] = p[:, 0], p[:, 1]
    path = layout.ExplainFolder(folder).samples_csv
    table.to_csv(path, index=False)
    np.savez_compressed(
        layout.ExplainFolder(folder).maps_npz, rows=sample, **{k.replace("+", "p"): v for k, v in maps.items()}
    )
    return path


def _grid(maps, names, inputs, sample, path, suptitle):
    x, labels, preds, probs, classes = (inputs.x, inputs.labels, inputs.preds, inputs.probs, inputs.classes)
    size = x.shape[1:3]
    panels, titles, colors = [], [], []
    for j, i in enumerate(sample):
        panels.append(x[i])
        titles.append(f"{classes[labels[i]]} -> {classes[preds[i]]} {probs[i, preds[i]]:.2f}")
        colors.append("black" if labels[i] == preds[i] else "red")
        for name in names:
            m = maps[name][j]
            panels.append(plots.overlay(x[i], m) if METHODS[name].overlay else _as_rgb(plots.resize_map(m, size)))
            titles.append(TITLES[name])
            colors.append("black")
    style = plots.GridStyle(ncols=1 + len(names), suptitle=suptitle)
    return plots.image_grid(panels, path, titles=titles, title_colors=colors, style=style)


def map_sections(maps, inputs, folder, root, *, heading: dict, verdicts=None) -> list[dict]:
    """One section per figure group with at least one computed method, for the images inputs.sample.

    heading: values for the figure headings (layer, patch, stride, fill, smoothgrad_samples).
    verdicts: sanity verdicts per method (badges).
    """
    sample = inputs.sample
    table_path = samples_table(maps, inputs, sample, folder)
    rows = "Each row: a test image (true -> predicted class, its probability; red = mistake), then"
    sections = []
    for fig, (title, suptitle) in FIGURES.items():
        names = [n for n in maps if METHODS[n].figure == fig]
        if not names:
            continue
        path = _grid(
            maps, names, inputs, sample, layout.ExplainFolder(folder).figure_png(fig), suptitle.format(**heading)
        )
        what = " ".join(f"{TITLES[n]}: {_caption(n, heading)}" for n in names)
        it = item("image", path, f"{rows} each method's map for the predicted class. {what}", table_path, root=root)
        it["badges"] = badges(names, verdicts)
        sections.append(section(fig, title, [it], group=records.RESULTS, kind="maps"))
    return sections


def _caption(name, heading) -> str:
    text = METHODS[name].caption
    if name == "occlusion":
        text += f" ({heading['patch']} px patch, stride {heading['stride']}, filled with {heading['fill']})"
    elif name == "smoothgrad":
        text += f" ({heading['smoothgrad_samples']} copies)"
    elif name == "gradcam" or name == "hirescam":
        text += f" (layer {heading['layer']})"
    return text


def _optimised_at(result) -> str:
    """'128 px (...; the network's input is 224 px)': the resolution feature visualisation optimised at."""
    side = result.images.shape[1]
    native = getattr(result, "input_size", None)
    if native is None or tuple(native) == tuple(result.images.shape[1:3]):
        return f"{side} px, the network's input size"
    return f"{side} px (analysis.filter_vis.size; the network's input is {native[0]} px)"


def filter_section(result, layer, folder, root, settings):
    table = pd.DataFrame(
        {
            "channel": result.channels,
            "start_activation": result.start,
            "final_activation": result.final,
            "pixel_std": result.pixel_std,
            "size": result.images.shape[1],
        }
    )
    csv = layout.ExplainFolder(folder).filter_vis_csv
    table.to_csv(csv, index=False)
    titles = [f"ch {c}: {a:.2g}" for c, a in zip(result.channels, result.final)]
    path = plots.image_grid(
        result.images,
        layout.ExplainFolder(folder).filter_vis_png,
        titles=titles,
        style=plots.GridStyle(suptitle=f"{layer}"),
    )
    param = "decorrelated Fourier" if settings.fourier else "pixel"
    return section(
        "filter_vis",
        "Feature visualization",
        [
            item(
                "image",
                path,
                f"Images optimised at {_optimised_at(result)} to excite single channels of {layer}: "
                f"{settings.steps} steps of gradient ascent ("
                f"{param} parameterisation, random jitter ±{settings.jitter}px, scale ±{settings.scale:.0%}, rotation "
                f"±{settings.rotation:g}°, total-variation penalty {settings.tv_weight:g}). Title: channel and its mean "
                f"activation on the image; the table has its value on the gray starting image too.",
                csv,
                root=root,
            )
        ],
        group=records.RESULTS,
        kind="features",
    )


def no_reference_section(folder, root, start=None):
    note = layout.ExplainFolder(folder).change_json
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
        "change",
        start.title if start else "Change from the starting weights",
        [item("json", note, "Why this section is empty.", note, root=root)],
        group=records.RESULTS,
        kind="change",
    )


def _flag(row, who: str) -> str:
    return " dead" if row[f"{who}_dead"] else (" gray" if row[f"{who}_gray"] else "")


def _channels_figure(result, rows: pd.DataFrame, layer, folder, start):
    """Each compared channel's picture at the start and after training, side by side."""
    panels, titles = [], []
    for k, r in rows.iterrows():
        panels += [result["reference"].images[k], result["finetuned"].images[k]]
        titles += [
            f"ch {r['channel']} {start.before}{_flag(r, 'reference')}",
            f"{start.after} cos {r['cosine_similarity']:.2f}{_flag(r, 'finetuned')}",
        ]
    style = plots.GridStyle(ncols=2, suptitle=f"{layer}: {start.before} vs {start.after}")
    return plots.image_grid(panels, layout.ExplainFolder(folder).change_channels_png, titles=titles, style=style)


def change_section(result, weights, what, folder, root, start=None):
    """Figures of the change from the starting weights (computed by change.weight_change / compare_channels
    for the change.Comparison `what`); start: a change.Start naming those weights (default: unknown)."""
    from convscope.analysis.standard.change import start_of

    start = start or start_of(None, None)
    layer, gray_std = what.layer, what.gray_std
    weights = pd.DataFrame(weights)
    w_csv = layout.ExplainFolder(folder).weight_change_csv
    weights.to_csv(w_csv, index=False)
    w_png = _bar(
        weights["layer"],
        weights["relative_change"],
        layout.ExplainFolder(folder).weight_change_png,
        "relative weight change ||W_ft - W_ref|| / ||W_ref||",
    )
    rows = pd.DataFrame(result["rows"])
    c_csv = layout.ExplainFolder(folder).change_channels_csv
    rows.to_csv(c_csv, index=False)
    dead_json = layout.ExplainFolder(folder).dead_channels_json
    dead_json.write_text(json.dumps({**result["dead"], "gray_std": gray_std}, indent=1))
    c_png = _channels_figure(result, rows, layer, folder, start)
    d = result["dead"]
    return section(
        "change",
        start.title,
        [
            item(
                "image",
                c_png,
                f"Feature visualizations of the same channels of {layer} before (left, {start.what}) and after "
                f"{start.training} (right), optimised at {_optimised_at(result['finetuned'])}; cos = cosine "
                f"similarity of the two pictures' embeddings "
                f"({start.before} {what.embed_layer}, pooled): near 1 = the channel kept its feature. 'gray' = the "
                f"picture stayed flat (pixel std < {gray_std}), 'dead' = zero on every test image.",
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
                f"{len(d['reference_dead'])} of {d['channels']} before, {len(d['finetuned_dead'])} after {start.training}.",
                dead_json,
                root=root,
            ),
        ],
        group=records.RESULTS,
        kind="change",
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
