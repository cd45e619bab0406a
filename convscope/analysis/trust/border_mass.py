"""Shortcuts in the model: is a class decided from the image's border rather than its centre?

A network that learned a frame, a watermark or a background strip that travels with one
label explains that class with maps whose mass sits at the edges. Per map method the
checks already computed (explaining the true class; no new forward pass) and per true
class: the mean over the checked images of the share of the map's positive mass in the
outer ring, `border` of each side wide (the data-side check's ring,
convscope.data.shortcuts). A map spread evenly puts the ring's area share there (0.44
for a ring of 1/8 per side).

A class is flagged when Grad-CAM's share, or occlusion's, reaches `threshold` (config
analysis.checks.border_share): most of the evidence for it lies in the border. Both count
because they see a frame differently: on a small CNN that learned a 3-px coloured frame
(tests/test_border_model.py, seeds 0-9) occlusion put 0.68-0.88 of its mass in the ring,
Grad-CAM at the 8 x 8 last conv only 0.43-0.54 (0.29 at most when the cue was central).
"""

from __future__ import annotations

import numpy as np

from convscope import layout, records
from convscope.data.shortcuts import ring_mask

# Methods whose share can flag a class: Grad-CAM, the report's headline map, and occlusion,
# which measures the model's output directly. The others are tabulated only.
FLAG_METHODS = ("gradcam", "occlusion")
TITLES = {"gradcam": "Grad-CAM", "occlusion": "occlusion"}


def border_shares(maps, border: float) -> np.ndarray:
    """Per N x H x W map: positive mass in the ring / positive mass (NaN for a map without positive mass)."""
    m = np.clip(np.asarray(maps, np.float64), 0, None)
    ring = ring_mask(m.shape[1], m.shape[2], border)
    total = m.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, m[:, ring].sum(axis=1) / total, np.nan)


def per_class(maps_by_method: dict, labels, classes: list[str], border: float) -> list[dict]:
    """One row per (method, class present): images and their mean border share."""
    labels = np.asarray(labels, int)
    rows = []
    for method, maps in maps_by_method.items():
        shares = border_shares(maps, border)
        for k in sorted(set(labels.tolist())):
            s = shares[(labels == k) & np.isfinite(shares)]
            if len(s):
                rows.append({"method": method, "class": classes[k], "images": len(s), "border_share": float(s.mean())})
    return rows


def check(maps_by_method: dict, labels, classes: list[str], border: float, threshold: float) -> dict:
    """The record: ring, its area share, threshold, rows, the flagged (method, class) pairs and a statement."""
    rows = per_class(maps_by_method, labels, classes, border)
    side = 1.0 - 2.0 * border
    area = 1.0 - side * side
    flagged = [
        {k: r[k] for k in ("method", "class", "border_share")}
        for r in rows
        if r["method"] in FLAG_METHODS and r["border_share"] >= threshold
    ]
    return {
        "border": border,
        "ring_area": area,
        "threshold": threshold,
        "rows": rows,
        "flagged": flagged,
        "statement": statement(rows, flagged, area),
    }


def statement(rows: list[dict], flagged: list[dict], area: float) -> str | None:
    """A warning naming each class decided from the border, or one quiet line; None without Grad-CAM or occlusion."""
    judged = [r for r in rows if r["method"] in FLAG_METHODS]
    if not judged:
        return None
    if not flagged:
        top = max(r["border_share"] for r in judged)
        return (
            f"No class is decided mostly from the image border: at most {top:.2f} of the map mass lies in "
            f"the outer ring ({area:.0%} of the area)."
        )
    by_class: dict[str, list[str]] = {}
    for f in flagged:
        by_class.setdefault(f["class"], []).append(f"{TITLES[f['method']]} {f['border_share']:.2f}")
    parts = [f"{cls} ({', '.join(v)})" for cls, v in by_class.items()]
    return (
        f"Possible shortcut: the model decides {'; '.join(parts)} mostly from the image border (share of the map "
        f"mass in the outer ring, {area:.0%} of the area): look for a frame, watermark or background that "
        f"travels with the label."
    )


def write(result: dict, folder, root) -> dict:
    """records.BORDER_MASS and its table in explain/; returns the checks section's item."""
    import pandas as pd

    from convscope.analysis.index import item

    files = layout.ExplainFolder(folder)
    records.BORDER_MASS.write(files.border_mass, result)
    pd.DataFrame(result["rows"], columns=["method", "class", "images", "border_share"]).to_csv(
        files.border_mass_csv, index=False
    )
    caption = (
        f"Share of each map's mass in the outer ring ({result['border']:.0%} of each side), per method and true "
        f"class; flagged at {result['threshold']:.2f} or more for Grad-CAM or occlusion. "
        + (result["statement"] or "Neither Grad-CAM nor occlusion ran in the checks.")
    )
    return item("table", files.border_mass_csv, caption, files.border_mass, root=root)
