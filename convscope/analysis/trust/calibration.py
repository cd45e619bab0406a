"""Reliability diagrams and calibration.json of one model (the math: convscope.stats.calibration)."""

from __future__ import annotations

from pathlib import Path

from convscope.stats.calibration import Calibration


def _diagram(ax, rel: dict, title: str) -> None:
    centres = (rel["edges"][:-1] + rel["edges"][1:]) / 2
    width = rel["edges"][1] - rel["edges"][0]
    filled = rel["count"] > 0
    ax.bar(
        centres[filled],
        rel["accuracy"][filled],
        width * 0.95,
        color="tab:blue",
        alpha=0.8,
        label="accuracy",
    )
    ax.bar(
        centres[filled],
        (rel["confidence"] - rel["accuracy"])[filled],
        width * 0.95,
        bottom=rel["accuracy"][filled],
        color="tab:red",
        alpha=0.3,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_title(f"{title}: ECE {rel['ece']:.3f}", fontsize=9)


def write(cal: Calibration, out_dir) -> tuple[Path, Path, Path]:
    """calibration.json, calibration.csv (per bin, before and after) and the reliability diagrams PNG."""
    import pandas as pd

    from convscope import layout, records
    from convscope.analysis import plots

    folder = layout.AnalysisFolder(out_dir)
    js = folder.calibration
    records.CALIBRATION.write(js, cal.summary())
    rows = []
    for when, rel in (("before", cal.before), ("after", cal.after)):
        for k in range(len(rel["count"])):
            rows.append(
                {
                    "when": when,
                    "bin_low": rel["edges"][k],
                    "bin_high": rel["edges"][k + 1],
                    "images": int(rel["count"][k]),
                    "confidence": rel["confidence"][k],
                    "accuracy": rel["accuracy"][k],
                }
            )
    csv = folder.calibration_csv
    pd.DataFrame(rows).to_csv(csv, index=False)
    fig, axes = plots.plt.subplots(1, 2, figsize=(8, 3.6), sharey=True)
    _diagram(axes[0], cal.before, "as trained")
    _diagram(axes[1], cal.after, f"temperature T = {cal.temperature:.2f}")
    axes[0].set_ylabel("accuracy in the bin")
    axes[1].legend(fontsize=7, loc="upper left")
    png = plots.save_figure(fig, folder.calibration_png)
    return js, csv, png
