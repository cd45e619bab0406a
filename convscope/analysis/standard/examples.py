"""Highest-probability test images per class and the most confident mistakes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import layout
from convscope.analysis import plots
from convscope.analysis.index import item, section
from convscope.analysis.steps import Labelled

log = logging.getLogger(__name__)


def top_per_class(probs: np.ndarray, n: int) -> dict[int, np.ndarray]:
    """For each class k: indices of the n test images with the highest p(k), highest first.

    Ties keep test-set order (stable sort), so the choice is deterministic.
    """
    probs = np.asarray(probs)
    return {k: np.argsort(-probs[:, k], kind="stable")[:n] for k in range(probs.shape[1])}


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of misclassified images, most confident (highest predicted probability) first."""
    probs = np.asarray(probs)
    preds = probs.argmax(axis=1)
    wrong = np.flatnonzero(preds != np.asarray(labels))
    order = np.argsort(-probs[wrong, preds[wrong]], kind="stable")
    return wrong[order][:n]


@dataclass(frozen=True)
class ExampleOptions:
    """Config analysis.examples: images shown per class, confident mistakes shown."""

    per_class: int
    mistakes: int


def _row(kind, k, rank, i, probs, data: Labelled):
    pred = int(probs[i].argmax())
    classes = data.classes
    return {
        "kind": kind,
        "class": classes[k] if k is not None else "",
        "rank": rank,
        "row": int(i),
        "file": data.files[i] if data.files is not None else "",
        "true": classes[int(data.labels[i])],
        "pred": classes[pred],
        "prob_class": float(probs[i, k]) if k is not None else float(probs[i, pred]),
        "prob_pred": float(probs[i, pred]),
    }


def _top_item(data: Labelled, probs, per_class: int, out_dir: Path, rows: list) -> dict:
    """The grid of the most typical test images per class; appends their table rows to `rows`."""
    classes, labels = data.classes, data.labels
    tiles, titles, colours = [], [], []
    for k, idx in top_per_class(probs, per_class).items():
        for rank, i in enumerate(idx, 1):
            rows.append(_row("top", k, rank, i, probs, data))
            tiles.append(data.images[i])
            titles.append(f"p({classes[k]})={probs[i, k]:.2f}\ntrue {classes[labels[i]]}")
            colours.append("black" if labels[i] == k else "red")
    top_png = plots.image_grid(
        tiles,
        layout.AnalysisFolder(out_dir).top_images_png,
        titles=titles,
        title_colors=colours,
        style=plots.GridStyle(
            ncols=per_class, suptitle="Highest-probability test images per class (one row per class)"
        ),
    )
    return item(
        "image",
        top_png,
        "Each row holds the test images the model finds most typical of one class, most confident "
        "first; a red title marks an image whose true class is a different one.",
        layout.AnalysisFolder(out_dir).examples_csv,
        root=out_dir,
    )


def _mistakes_item(data: Labelled, probs, wrong, out_dir: Path) -> dict:
    classes, labels = data.classes, data.labels
    preds = probs.argmax(axis=1)
    mistakes_png = plots.image_grid(
        [data.images[i] for i in wrong],
        layout.AnalysisFolder(out_dir).mistakes_png,
        titles=[f"{classes[preds[i]]} {probs[i, preds[i]]:.2f}\ntrue {classes[labels[i]]}" for i in wrong],
        title_colors=["red"] * len(wrong),
        style=plots.GridStyle(suptitle="Most confident mistakes (predicted class and probability, true class)"),
    )
    return item(
        "image",
        mistakes_png,
        "Misclassified test images the model was surest about: look for label noise, ambiguous "
        "images or a shortcut the network learned.",
        layout.AnalysisFolder(out_dir).examples_csv,
        root=out_dir,
    )


def examples(data: Labelled, probs, out_dir, options: ExampleOptions) -> dict:
    out_dir = Path(out_dir)
    probs = np.asarray(probs)
    data = replace(data, labels=np.asarray(data.labels))
    labels = data.labels
    rows = []
    items = [_top_item(data, probs, options.per_class, out_dir, rows)]
    wrong = confident_mistakes(probs, labels, options.mistakes)
    for rank, i in enumerate(wrong, 1):
        rows.append(_row("mistake", None, rank, i, probs, data))
    if len(wrong):
        items.append(_mistakes_item(data, probs, wrong, out_dir))
    pd.DataFrame(rows).to_csv(layout.AnalysisFolder(out_dir).examples_csv, index=False)
    log.info(
        "examples: %d per class, %d mistakes shown (%d in total)",
        options.per_class,
        len(wrong),
        int((probs.argmax(axis=1) != labels).sum()),
    )
    if not len(wrong):
        log.info("no misclassified test images: mistakes figure not drawn")
    return section("examples", "Top images and confident mistakes", items)
