"""Shortcuts in the data: simple image properties that alone predict a class.

A network learns whatever separates the classes most cheaply. When one class's images
are all brighter, redder, wider, framed by a border, or saved at another JPEG quality,
that property travels with the label, and a high test accuracy may measure it instead
of the object. This check asks each property alone:

- properties of the prepared images: brightness, colour means and spread, saturation,
  the border ring's colour and brightness against the centre's; and, from the clean
  manifest when given, size, aspect, sharpness, entropy, JPEG quality and each quality
  flag;
- per property and class, the one-vs-rest AUC of the raw property (no fitting: a
  single number per image, either direction), and per property the 5-fold
  cross-validated balanced accuracy of a depth-2 decision tree on it alone.

A (property, class) pair is flagged when its AUC reaches `auc` (config
audit.shortcuts.auc): the property alone nearly sorts that class from the others.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# Manifest columns that describe the file rather than the object (convscope.data.quality).
MANIFEST_PROPERTIES = ("width", "height", "aspect", "sharpness", "entropy", "jpeg_quality")


def ring_mask(h: int, w: int, border: float) -> np.ndarray:
    """H x W bool: the outer ring, `border` of each side wide (at least one pixel); the centre is the rest."""
    bh, bw = max(1, round(h * border)), max(1, round(w * border))
    ring = np.ones((h, w), bool)
    ring[bh : h - bh, bw : w - bw] = False
    return ring


def image_properties(images: np.ndarray, border: float = 0.125) -> pd.DataFrame:
    """One row per N x H x W x 3 uint8 image: brightness, colour, saturation, border against centre.

    border: the ring's width as a share of the side (the centre is the rest).
    """
    x = np.asarray(images, np.float32) / 255.0
    n, h, w = x.shape[:3]
    ring = ring_mask(h, w, border)
    luma = x @ np.array([0.299, 0.587, 0.114], np.float32)
    sat = x.max(axis=-1) - x.min(axis=-1)
    out = {
        "brightness": luma.mean(axis=(1, 2)),
        "contrast": luma.std(axis=(1, 2)),
        "saturation": sat.mean(axis=(1, 2)),
    }
    for c, name in enumerate(("red", "green", "blue")):
        out[f"mean_{name}"] = x[..., c].mean(axis=(1, 2))
        out[f"border_{name}"] = x[:, ring, c].mean(axis=1)
    out["border_brightness"] = luma[:, ring].mean(axis=1)
    out["border_minus_centre"] = out["border_brightness"] - luma[:, ~ring].mean(axis=1)
    return pd.DataFrame(out)


def manifest_properties(manifest: pd.DataFrame, files: list[str]) -> pd.DataFrame:
    """The clean manifest's file properties and quality flags (0/1 each) for `files`, in that order."""
    rows = manifest.set_index("file").reindex(files)
    cols = {c: pd.to_numeric(rows[c], errors="coerce") for c in MANIFEST_PROPERTIES if c in rows}
    if "flags" in rows:
        flags = rows["flags"].fillna("").astype(str)
        for flag in sorted({f for v in flags for f in v.split(";") if f}):
            cols[f"flag_{flag}"] = flags.map(lambda v, f=flag: float(f in v.split(";")))
    return pd.DataFrame(cols).reset_index(drop=True)


def _auc(values: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    auc = float(roc_auc_score(positive, values))
    return max(auc, 1.0 - auc)  # either direction: brighter or darker


def _cv_balanced_accuracy(values: np.ndarray, labels: np.ndarray, seed: int) -> float | None:
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    folds = min(5, int(np.bincount(labels).min()))
    if folds < 2:
        return None
    tree = DecisionTreeClassifier(max_depth=2, random_state=seed)
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return float(cross_val_score(tree, values[:, None], labels, cv=cv, scoring="balanced_accuracy").mean())


def check(props: pd.DataFrame, labels, classes: list[str], auc: float, seed: int = 0) -> dict:
    """Per property: each class's one-vs-rest AUC and the CV balanced accuracy; the pairs at or above `auc`."""
    labels = np.asarray(labels, int)
    present = [k for k in range(len(classes)) if (labels == k).any() and (labels != k).any()]
    table, flagged = [], []
    for name in props.columns:
        values = props[name].to_numpy(np.float64)
        ok = np.isfinite(values)
        if ok.sum() < 4 or np.ptp(values[ok]) == 0:
            continue
        row = {"property": name, "cv_balanced_accuracy": _cv_balanced_accuracy(values[ok], labels[ok], seed)}
        for k in present:
            pos = labels[ok] == k
            if pos.all() or not pos.any():
                continue
            row[f"auc_{classes[k]}"] = a = _auc(values[ok], pos)
            if a >= auc:
                flagged.append({"property": name, "class": classes[k], "auc": round(a, 3)})
        table.append(row)
    return {
        "auc_threshold": auc,
        "chance_balanced_accuracy": 1.0 / max(len(present), 1),
        "flagged": sorted(flagged, key=lambda f: -f["auc"]),
        "properties": table,
        "statement": statement(flagged),
    }


def statement(flagged: list[dict]) -> str:
    if not flagged:
        return "No simple image property alone predicts a class."
    by_class: dict[str, list[str]] = {}
    for f in sorted(flagged, key=lambda f: -f["auc"]):
        by_class.setdefault(f["class"], []).append(f"{f['property']} (AUC {f['auc']:.2f})")
    parts = [f"{cls}: {', '.join(props[:3])}" for cls, props in by_class.items()]
    return (
        "Possible shortcut: simple image properties alone sort these classes from the rest, so a model may "
        "learn them instead of the object: " + "; ".join(parts) + "."
    )


def audit_prepared(prepared_dir, classes: list[str], auc: float, seed: int = 0, manifest=None) -> dict:
    """check() over every prepared split's images (and the clean manifest's properties when given)."""
    from pathlib import Path

    from convscope import layout

    xs, ys, files = [], [], []
    for split in layout.SPLITS:
        path = layout.prepared_in(prepared_dir, split)
        if not Path(path).is_file():
            continue
        xs.append(image_properties(np.load(path, mmap_mode="r")))
        ys.append(np.load(layout.prepared_in(prepared_dir, split, layout.PREPARED_LABELS)))
        files += (
            pd.read_csv(layout.prepared_in(prepared_dir, split, layout.PREPARED_INDEX))["file"].astype(str).tolist()
        )
    if not xs:
        raise FileNotFoundError(f"{prepared_dir}: no prepared split to check for shortcuts; run the prepare rule")
    props = pd.concat(xs, ignore_index=True)
    if manifest is not None and Path(manifest).is_file():
        props = pd.concat([props, manifest_properties(pd.read_csv(manifest), files)], axis=1)
    result = check(props, np.concatenate(ys), classes, auc, seed)
    if result["flagged"]:
        log.warning("%s", result["statement"])
    return result


AUDIT_KEYS = ("statement", "flagged", "auc_threshold")  # what audit.json keeps (the report reads these)


def audit_block(prepared_dir, classes: list[str], opts: dict, seed: int, manifest=None) -> dict | None:
    """audit.json's "shortcuts" block for config audit.shortcuts `opts`; None when the check is off."""
    if not opts["enabled"]:
        return None
    found = audit_prepared(prepared_dir, classes, float(opts["auc"]), seed, manifest)
    return {k: found[k] for k in AUDIT_KEYS}
