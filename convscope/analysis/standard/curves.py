"""Learning curves: train/val loss and accuracy per epoch, from a run's history.csv."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from convscope import layout
from convscope.analysis import plots
from convscope.analysis.index import item, section

log = logging.getLogger(__name__)

# Columns that mark training phases (the train stage writes `depth`: blocks
# unfrozen, which progressive unfreezing raises); a change of value draws a
# vertical line so a jump in the curves can be read as a schedule step.
PHASE_COLUMNS = ("depth", "phase", "stage", "tune_depth")


def read_history(path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training history; the train rule writes it next to model.keras")
    history = pd.read_csv(path)
    if history.empty:
        raise ValueError(f"{path}: training history has no epochs; re-run the training job")
    return history


def learning_curves(history_path, out_dir) -> dict:
    """Plot loss and accuracy (train and val) against epoch; the CSV goes beside the PNG."""
    out_dir = Path(out_dir)
    history = read_history(history_path)
    # Progressive runs restart Keras' epoch counter per phase: plot in row order.
    x = np.arange(1, len(history) + 1)
    metrics = [m for m in ("loss", "accuracy") if m in history.columns or f"val_{m}" in history.columns]
    if not metrics:
        raise ValueError(
            f"{history_path}: no loss/accuracy columns (has {list(history.columns)}); expected Keras CSVLogger output"
        )
    fig, axes = plots.plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    phase_col = next((c for c in PHASE_COLUMNS if c in history.columns), None)
    for ax, metric in zip(axes[0], metrics):
        for col, style in ((metric, "-"), (f"val_{metric}", "--")):
            if col in history.columns:
                ax.plot(x, history[col], style, marker="o", ms=3, label="val" if col.startswith("val_") else "train")
        if phase_col:
            changes = np.flatnonzero(history[phase_col].to_numpy()[1:] != history[phase_col].to_numpy()[:-1])
            for c in changes:
                ax.axvline(c + 1.5, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = plots.save_figure(fig, layout.AnalysisFolder(out_dir).curves_png)
    csv = layout.AnalysisFolder(out_dir).curves_csv
    history.insert(0, "step", x)
    history.to_csv(csv, index=False)
    log.info("learning curves: %d epochs", len(history))
    return section(
        "curves",
        "Learning curves",
        [
            item(
                "image",
                png,
                "Loss and accuracy per epoch, training (solid) and validation (dashed). A widening gap "
                "means overfitting; dotted lines mark where more blocks were unfrozen (progressive runs).",
                csv,
                root=out_dir,
            )
        ],
    )
