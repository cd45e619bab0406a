"""Confusion matrix and per-class precision/recall/F1 on the test set."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import layout
from convscope.analysis import plots
from convscope.analysis.index import item, section

log = logging.getLogger(__name__)


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
    """counts[i, j] = test images of true class i predicted as class j."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    return np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def per_class_report(counts: np.ndarray, classes) -> pd.DataFrame:
    """Precision, recall, F1 and support per class, plus macro and overall rows."""
    tp = np.diag(counts).astype(np.float64)
    predicted = counts.sum(axis=0)
    support = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    report = pd.DataFrame(
        {"class": list(classes), "precision": precision, "recall": recall, "f1": f1, "support": support}
    )
    total = int(support.sum())
    accuracy = tp.sum() / total if total else 0.0
    summary = pd.DataFrame(
        [
            {
                "class": "macro avg",
                "precision": precision.mean(),
                "recall": recall.mean(),
                "f1": f1.mean(),
                "support": total,
            },
            {"class": "accuracy", "precision": np.nan, "recall": np.nan, "f1": accuracy, "support": total},
        ]
    )
    return pd.concat([report, summary], ignore_index=True)


def confusion(labels, probs, classes, out_dir) -> dict:
    out_dir = Path(out_dir)
    preds = np.asarray(probs).argmax(axis=1)
    counts = confusion_matrix(labels, preds, len(classes))
    csv = layout.AnalysisFolder(out_dir).confusion_csv
    pd.DataFrame(counts, index=pd.Index(classes, name="true"), columns=list(classes)).to_csv(csv)
    # Colour by row fraction (recall per class) so small classes read as clearly as
    # large ones; the printed numbers stay counts.
    support = counts.sum(axis=1, keepdims=True)
    frac = np.divide(counts, support, out=np.zeros(counts.shape, dtype=np.float64), where=support > 0)
    fig, ax = plots.plt.subplots(figsize=(1.5 + 0.8 * len(classes), 1.2 + 0.7 * len(classes)))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(counts):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    png = plots.save_figure(fig, layout.AnalysisFolder(out_dir).confusion_png)

    report = per_class_report(counts, classes)
    report_csv = layout.AnalysisFolder(out_dir).per_class_csv
    report.round(4).to_csv(report_csv, index=False)
    log.info("test accuracy %.3f on %d images", report["f1"].iloc[-1], int(counts.sum()))
    return section(
        "confusion",
        "Confusion matrix and per-class report",
        [
            item(
                "image",
                png,
                "Rows are true classes, columns predictions; numbers are test-image counts, colour the "
                "fraction of the row. Off-diagonal cells are the confusions.",
                csv,
                root=out_dir,
            ),
            item(
                "table",
                report_csv,
                "Precision (of images predicted as the class, how many are right), recall (of the "
                "class's images, how many were found), F1 and support per class.",
                report_csv,
                root=out_dir,
            ),
        ],
    )
