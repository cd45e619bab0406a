"""Files, figures and captions of the trust checks of the explanation maps.

Pointing game, deletion and insertion curves against the random order, the
parameter-randomisation sanity check and the ranking of the methods by that
evidence (computed in convscope.analysis.trust.checks, .sanity and .ranking). Every
section is in group "trust", so the report shows it next to the other backbones'.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from convscope import layout, records
from convscope.analysis import plots
from convscope.analysis.explain.figures import TITLES
from convscope.analysis.index import item, section

_CHECKS_TITLE = "Are the explanations right? Pointing game, deletion and insertion"


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
    ax.set_xticks(pos, [TITLES[n] for n in names], rotation=30, ha="right")
    ax.set_ylabel("pointing accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7)
    return plots.save_figure(fig, path)


def pointing_items(game, idx, labels, classes, folder, root) -> list[dict]:
    files = layout.ExplainFolder(folder)
    p_json = files.pointing
    records.POINTING.write(p_json, {k: v for k, v in game.items() if k not in ("hits", "rows")})
    if not game["images"]:
        note = "No test image has an object box, so the pointing game was not played (boxes come with the synthetic source)."
        return [item("json", p_json, note, p_json, root=root)]
    rows = idx[game["rows"]]
    table = pd.DataFrame({"row": rows, "true": [classes[k] for k in labels[rows]]})
    for name, h in game["hits"].items():
        table[f"{name}_hit"] = h
    p_csv = files.pointing_csv
    table.to_csv(p_csv, index=False)
    names = list(game["methods"])
    p_png = _pointing_plot(game, names, files.pointing_png)
    acc = ", ".join(f"{TITLES[n]} {game['methods'][n]['accuracy']:.2f}" for n in names)
    tol = float(game.get("tolerance_px") or 0)
    box = f"box grown by {tol:g} px" if tol else "box"
    caption = (
        f"Pointing game on {game['images']} test images with an object box: share of images whose "
        f"map maximum (true class) falls inside the {box} ({acc}); light bars: the "
        f"{game['off_centre_images']} images whose {box} misses the image centre. Dashes: chance (mean "
        f"area fraction of the {box}) and a map that always points at the centre."
    )
    return [
        item("image", p_png, caption, p_csv, root=root),
        item("json", p_json, "Pointing-game accuracy per method and chance level.", p_json, root=root),
    ]


def _curves_plot(fractions, curves, aucs, direction, path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, c in curves.items():
        label = f"{TITLES.get(name, name)} (AUC {aucs[name]:.2f})"
        ax.plot(
            fractions,
            c.mean(axis=0),
            label=label,
            ls="--" if name == "random" else "-",
            color="black" if name == "random" else None,
        )
    verb = "deleted (most salient first)" if direction == "deletion" else "inserted (most salient first)"
    ax.set_xlabel(f"fraction of pixels {verb}")
    ax.set_ylabel("p(true class)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, ncol=2)
    return plots.save_figure(fig, path)


def faithfulness_items(faith, n_images, steps, folder, root) -> list[dict]:
    fractions = faith["fractions"]
    long = pd.DataFrame(
        [
            {"direction": d, "method": name, "fraction": f, "mean_probability": float(c[:, j].mean())}
            for d, curves in faith["curves"].items()
            for name, c in curves.items()
            for j, f in enumerate(fractions)
        ]
    )
    files = layout.ExplainFolder(folder)
    csv = files.faithfulness_csv
    long.to_csv(csv, index=False)
    long[long.direction == "deletion"].drop(columns="direction").rename(
        columns={"fraction": "fraction_deleted"}
    ).to_csv(files.deletion_csv, index=False)
    summary = {"images": int(n_images), "steps": int(steps), "auc": faith["auc"], "gain_over_random": faith["gain"]}
    js = files.faithfulness_json
    js.write_text(json.dumps(summary, indent=1))
    records.DELETION.write(
        files.deletion, {"images": int(n_images), "steps": int(steps), "auc": faith["auc"]["deletion"]}
    )
    items = []
    what = {
        "deletion": "as the pixels each map ranks highest are replaced by the image's mean colour. Lower area "
        "under the curve = the map found the evidence faster",
        "insertion": "as the pixels each map ranks highest are put back into the mean-colour image. Higher area "
        "under the curve = the map found the evidence faster",
    }
    for d in faith["curves"]:
        png = _curves_plot(fractions, faith["curves"][d], faith["auc"][d], d, files.curves_png(d))
        caption = (
            f"{d.capitalize()} curves on {n_images} test images: the true class's mean probability {what[d]}; "
            f"dashed = random pixel order on the same images."
        )
        items.append(item("image", png, caption, csv, root=root))
    items.append(
        item(
            "json",
            js,
            "Area under each curve (mean over images) and each method's gain over the random order "
            "(positive = more faithful than chance).",
            js,
            root=root,
        )
    )
    return items


def checks_section(pointing: list[dict], faith: list[dict], extra: list[dict]) -> dict:
    return section(
        "explanation_checks", _CHECKS_TITLE, [*pointing, *faith, *extra], group=records.CHECKS, kind="checks"
    )


def completeness_item(errors, tolerance, steps, folder, root) -> dict:
    """Integrated Gradients' completeness on the checked images: attributions sum to the score difference."""
    errors = np.asarray(errors, np.float64)
    within = float((errors <= tolerance).mean()) if len(errors) else None
    summary = {
        "images": len(errors),
        "steps": int(steps),
        "tolerance": float(tolerance),
        "share_within_tolerance": within,
        "mean_relative_error": float(errors.mean()) if len(errors) else None,
        "max_relative_error": float(errors.max()) if len(errors) else None,
    }
    path = layout.ExplainFolder(folder).ig_completeness
    path.write_text(json.dumps(summary, indent=1))
    caption = (
        f"Integrated Gradients' completeness check: the attributions of an image should sum to its class score "
        f"minus the black baseline's; {within:.0%} of {len(errors)} images within {tolerance:.0%} "
        f"({steps} path steps; more steps, smaller error)."
        if len(errors)
        else "Integrated Gradients' completeness check: no image checked."
    )
    return item("json", path, caption, path, root=root)


def sanity_section(result, stage_names, folder, root) -> dict:
    """Similarity curves (PNG + CSV), the verdicts (JSON), a one-line summary per failure."""
    import matplotlib.pyplot as plt

    rows = pd.DataFrame(result.rows)
    files = layout.ExplainFolder(folder)
    csv = files.sanity_csv
    rows.to_csv(csv, index=False)
    js = files.sanity
    records.SANITY.write(
        js, {"threshold": result.threshold, "images": result.images, "stages": stage_names, "methods": result.verdicts}
    )
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharey="row")
    for col, mode in enumerate(("cascading", "independent")):
        part = rows[rows["mode"] == mode]
        for r, metric in enumerate(("spearman", "ssim")):
            ax = axes[r, col]
            for name, g in part.groupby("method", sort=False):
                ax.plot(range(len(g)), g[metric], marker="o", label=TITLES.get(name, name))
            labels = list(part.drop_duplicates("stage")["stage"]) if len(part) else []
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
            ax.set_ylabel(f"{'Spearman' if metric == 'spearman' else 'SSIM'} to trained maps")
            if r == 0:
                ax.set_title(f"{mode}: {'head, then blocks from the top' if col == 0 else 'one block at a time'}")
                ax.axhline(result.threshold, color="red", ls=":", lw=1)
            ax.set_ylim(-0.2 if metric == "spearman" else 0, 1.05)
    axes[0, 0].legend(fontsize=6, ncol=2)
    png = plots.save_figure(fig, files.sanity_png)
    failed = [f"{TITLES[n]}: {v['reason']}" for n, v in result.verdicts.items() if not v["passed"]]
    passed = [TITLES[n] for n, v in result.verdicts.items() if v["passed"]]
    caption = (
        f"Parameter-randomisation sanity check (Adebayo et al. 2018) on {result.images} test images: similarity of "
        f"each method's maps to the trained model's as the weights are shuffled (left: the head, then the backbone's "
        f"blocks from the top, cumulatively; right: one block at a time). A method passes when its rank correlation "
        f"falls below {result.threshold:g} (red dots) once the top is randomised. Passed: "
        f"{', '.join(passed) or 'none'}." + (" Failed: " + " ".join(failed) if failed else "")
    )
    items = [
        item("image", png, caption, csv, root=root),
        item("json", js, "Pass/fail per method with the similarity at the last cascading stage.", js, root=root),
    ]
    return section(
        "explanation_sanity",
        "Do the maps depend on the weights? Randomisation check",
        items,
        group=records.CHECKS,
        kind="sanity",
    )


def ranking_section(rows, verdict: str, folder, root) -> dict:
    table = pd.DataFrame(rows)
    table.insert(1, "title", [TITLES.get(m, m) for m in table["method"]])
    cols = ["rank", *[c for c in table.columns if c != "rank"]]
    csv = layout.ExplainFolder(folder).method_ranking_csv
    table[cols].to_csv(csv, index=False)
    caption = (
        f"{verdict} Methods ranked by the evidence above: the randomisation sanity check first (a failure goes last), "
        f"then the mean rank over the gains of deletion and insertion AUC over the random order"
        f"{' and the pointing game over the centre baseline' if 'pointing_over_centre' in table else ''}."
    )
    return section(
        "method_ranking",
        "Which map to believe for this model",
        [item("table", csv, caption, csv, root=root)],
        group=records.CHECKS,
        kind="ranking",
    )
