"""The report's data-audit section: quality flags, label issues, leakage pairs, each with a
review control per image (the page's review.js turns the choices into review.csv).

Reads the clean manifest, results/audit/{backbone}/ and, when the best runs were
analysed, their per-image test predictions (accuracy on flagged vs unflagged test
images, and on test images without a near-twin in train beside the overall figure).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from convscope import layout
from convscope.report import collect

log = logging.getLogger(__name__)

PER_FLAG = 6  # example thumbnails per quality flag
ISSUES_SHOWN = 24  # label-issue cards per backbone
PAIRS_SHOWN = 12  # leakage pairs per backbone
ROW_LABELS = {
    "all": "at all",
    "without_twin": "without a near copy in train",
    "flagged": "with a quality flag",
    "unflagged": "without a quality flag",
}
_PLANTED = "; planted wrong class, drawn as "  # convscope.data.synthetic.PLANTED


class Thumbs:
    """Thumbnails of raw files under assets/audit/, one per file, named by a counter."""

    def __init__(self, results: Path, assets_root: Path):
        self.results, self.dir = Path(results), Path(assets_root) / "audit"
        self.made: dict[str, str] = {}

    def __call__(self, rel: str) -> str | None:
        if rel in self.made:
            return self.made[rel]
        from PIL import Image, ImageOps

        src = self.results / "raw" / rel
        if not rel or not src.is_file():
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        dst = self.dir / f"t{len(self.made)}.jpg"
        try:
            with Image.open(src) as im:
                im = ImageOps.exif_transpose(im).convert("RGB")
                im.thumbnail((112, 112))
                im.save(dst, "JPEG", quality=85)
        except (OSError, ValueError):
            return None  # quarantined files may not decode: the card shows the name only
        self.made[rel] = f"assets/audit/{dst.name}"
        return self.made[rel]


def _planted(results: Path, classes: list[str]) -> dict[str, str]:
    """{file: shape drawn} of the synthetic source's planted label errors (crawl ledger detail)."""
    found = {}
    for cls in classes:
        path = layout.Results(results).ledger(cls)
        if path.is_file():
            with open(path, newline="") as f:
                for r in csv.DictReader(f):
                    if _PLANTED in (r.get("detail") or ""):
                        found[f"{cls}/{r['file']}"] = r["detail"].split(_PLANTED)[1]
    return found


def quality(manifest: list[dict], thumbs: Thumbs) -> dict:
    kept = [r for r in manifest if r["status"] == "kept"]
    by_flag: dict[str, list[dict]] = {}
    for r in kept:
        for flag in filter(None, (r.get("flags") or "").split(";")):
            by_flag.setdefault(flag, []).append(r)
    flags = [
        {
            "flag": flag,
            "count": len(rows),
            # The same card fields as the label-issue cards (the template is strict about undefined ones).
            "examples": [
                {
                    "file": r["file"],
                    "cls": r["cls"],
                    "thumb": thumbs(r["file"]),
                    "note": flag,
                    "suggested": None,
                    "planted": None,
                }
                for r in rows[:PER_FLAG]
            ],
        }
        for flag, rows in sorted(by_flag.items())
    ]
    return {"kept": len(kept), "flagged": sum(bool(r.get("flags")) for r in kept), "flags": flags}


def _accuracy(rows: list[dict]) -> dict:
    n = len(rows)
    return {"n": n, "accuracy": round(sum(r["true"] == r["pred"] for r in rows) / n, 4) if n else None}


def test_accuracies(predictions: Path, twins: set[str], flagged: set[str]) -> dict | None:
    """Test accuracy overall, without a train near-twin, and on flagged vs unflagged images."""
    if not predictions.is_file():
        return None
    rows = collect.read_csv(predictions, "analyse rule (the test probabilities)")
    return {
        "all": _accuracy(rows),
        "without_twin": _accuracy([r for r in rows if r["file"] not in twins]),
        "flagged": _accuracy([r for r in rows if r["file"] in flagged]),
        "unflagged": _accuracy([r for r in rows if r["file"] not in flagged]),
    }


def _in_results(paths: layout.Results, path: Path) -> str:
    return path.relative_to(paths.root).as_posix()


def backbone_audit(results: Path, backbone: str, ctx: dict) -> dict:
    """One backbone's label issues and leakage pairs; ctx: thumbs, planted, flagged, best run."""
    paths = layout.Results(results)
    summary = collect.read_json(paths.audit_summary(backbone), f"audit rule ({backbone})")
    issues = collect.read_csv(paths.label_issues(backbone), f"audit rule ({backbone})")
    leaks = collect.read_csv(paths.leakage(backbone), f"audit rule ({backbone})")
    thumbs, planted = ctx["thumbs"], ctx["planted"]
    flagged_issues = [r for r in issues if r["issue"] == "True"]
    cards = [
        {
            "file": r["file"],
            "cls": r["given"],
            "thumb": thumbs(r["file"]),
            "suggested": r["suggested"],
            "note": f"given {r['given']}, looks like {r['suggested']} (score {float(r['score']):.3f})",
            "planted": planted.get(r["file"]),
        }
        for r in flagged_issues[:ISSUES_SHOWN]
    ]
    in_set = {r["file"] for r in flagged_issues}
    k = len(planted)
    top_k = {r["file"] for r in issues[:k]}
    pairs = [{**r, "thumb": thumbs(r["file"]), "twin_thumb": thumbs(r["twin"])} for r in leaks[:PAIRS_SHOWN]]
    run = ctx["best"].get(backbone)
    preds = paths.analysis(backbone, run).probabilities if run else Path("/nonexistent")
    accuracy = test_accuracies(preds, set(summary.get("test_twin_files", [])), ctx["flagged"])
    return {
        "name": backbone,
        "summary": summary,
        "issues": cards,
        # Asset names mirror the results tree (audit/{backbone}/...).
        "issues_csv": ctx["assets"].add(paths.label_issues(backbone), _in_results(paths, paths.label_issues(backbone))),
        "leakage_csv": ctx["assets"].add(paths.leakage(backbone), _in_results(paths, paths.leakage(backbone))),
        "planted": {"n": k, "in_issue_set": len(in_set & set(planted)), "in_top_k": len(top_k & set(planted))}
        if k
        else None,
        "pairs": pairs,
        "run": run,
        "accuracy": accuracy,
        # Rows with no image get no row in the table (a blank where a number belongs), only this note.
        "accuracy_missing": [ROW_LABELS[k] for k, v in (accuracy or {}).items() if not v["n"]],
    }


def build_audit(results: Path, classes: list[str], assets, best: dict) -> dict:
    """The audit section's context; `best`: {backbone: run} (empty when runs are not reported)."""
    results = Path(results)
    manifest = collect.read_csv(layout.Results(results).clean_manifest, "clean stage (rule clean)")
    thumbs = Thumbs(results, assets.root)
    ctx = {
        "thumbs": thumbs,
        "planted": _planted(results, classes),
        "flagged": {r["file"] for r in manifest if r["status"] == "kept" and r.get("flags")},
        "best": best,
        "assets": assets,
    }
    audit_root = layout.Results(results).audits_dir
    audited = (
        sorted(p.name for p in audit_root.iterdir() if layout.Results(results).audit_summary(p.name).is_file())
        if audit_root.is_dir()
        else []
    )
    log.info("report: data audit of %s", audited or "no backbone")
    return {
        "classes": classes,
        "quality": quality(manifest, thumbs),
        "backbones": [backbone_audit(results, b, ctx) for b in audited],
        "review_name": "review.csv",
        "json": json.dumps,
    }
