"""What the predict and export rules ask: the folder, the chosen runs, the settings (one place each)."""

from __future__ import annotations

from convscope import backbones as registry
from convscope import grid


def folder(config: dict) -> str:
    """predict_folder (command line) or predict.folder; an error naming both keys when neither is set."""
    chosen = config.get("predict_folder") or (config.get("predict") or {}).get("folder")
    if not chosen:
        raise ValueError(
            "the predict target needs a folder of images: set config key predict.folder, or run "
            "`snakemake predict --config predict_folder=DIR`"
        )
    return str(chosen)


def named_runs(config: dict) -> list[tuple[str, str]] | None:
    """[(backbone, run)] of config key predict.runs, checked against the grid; None for `best`."""
    runs = (config.get("predict") or {}).get("runs", "best")
    if runs == "best":
        return None
    out = []
    for entry in runs:
        backbone, run = entry.split("/", 1)
        if backbone not in config["backbones"]:
            raise ValueError(f"config key predict.runs: {entry!r} names backbone {backbone!r}, not in backbones")
        grid.find(config, backbone, run)  # KeyError listing the grid's runs
        out.append((backbone, run))
    return out


def settings(config: dict, backbone: str) -> dict:
    """apply.Settings of one backbone: prepare's resize policy and clean's pixel guard, so images
    are read as the training data was."""
    predict, analysis = config["predict"], config["analysis"]
    return {
        "size": registry.input_size(backbone, config["backbones"].get(backbone)),
        "policy": config["prepare"]["resize"],
        "max_pixels": config["clean"]["max_pixels"],
        "top_k": predict["top_k"],
        "gradcam": predict["gradcam"],
        "batch_size": predict["batch_size"],
        # The analysis' Grad-CAM layer and placement, so the page shows the report's maps.
        "gradcam_layer": analysis["gradcam"]["layer"] or "",
        "min_map_side": analysis["min_map_side"],
    }
