"""The findings that open the report: what a reader came for, in a few cards.

Per backbone: the model analysed (its test accuracy with the 95% CI, calibration),
whether fine-tuning beat training from scratch and a frozen-base features head
(CI overlap said plainly, McNemar's exact test on the same test images), and
whether the explanation checks passed; then the data health. Each card is read
from files the stages already wrote (best.json, comparisons.csv, the analysis
folders, the clean manifest), nothing is recomputed here.

An explanation check is one function in CHECKS: (layout.AnalysisFolder) -> Check or
None when that check did not run (convscope.records.AnalysisRecord.read); adding one (e.g. a sanity badge) is one
function and one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from convscope import layout, records
from convscope.report import collect


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    text: str
    badge: str = ""  # the badge's words ("3 of 10 passed"); empty: "pass" or "fail"


def _record(folder: layout.AnalysisFolder | None, name: str) -> dict | None:
    """One record of the analysis folder (None: no folder, or its analysis did not run)."""
    if folder is None:
        return None
    try:
        return records.ANALYSIS_RECORDS[name].read(folder.records[name])
    except ValueError as e:
        raise collect.ReportInputError(str(e)) from e


def pointing_check(folder: layout.AnalysisFolder) -> Check | None:
    game = _record(folder, "pointing")
    if not game or not game.get("images") or "gradcam" not in (game.get("methods") or {}):
        return None
    acc = float(game["methods"]["gradcam"]["accuracy"])
    bar = max(float(game.get("chance") or 0), float(game.get("centre_baseline") or 0))
    return Check(
        "pointing game",
        acc > bar,
        f"Grad-CAM points inside the object box on {acc:.0%} of {game['images']} test images "
        f"(chance {float(game.get('chance') or 0):.0%}, always-the-centre {float(game.get('centre_baseline') or 0):.0%})"
        + (_CLOSE_NOTE if abs(acc - bar) < POINTING_CLOSE else ""),
    )


# Margins below these flipped between seeds of the demo (bench/demo_seeds.py): a finding
# that close says so instead of reading as settled.
POINTING_CLOSE, DELETION_CLOSE = 0.10, 0.02
_CLOSE_NOTE = "; the margin is small enough to change with the seed or the machine"


def deletion_check(folder: layout.AnalysisFolder) -> Check | None:
    d = _record(folder, "deletion")
    auc = (d or {}).get("auc") or {}
    if "gradcam" not in auc or "random" not in auc:
        return None
    return Check(
        "deletion",
        auc["gradcam"] < auc["random"],
        f"deleting the pixels Grad-CAM ranks first lowers the true class's probability "
        f"{'faster' if auc['gradcam'] < auc['random'] else 'no faster'} than a random order "
        f"(AUC {auc['gradcam']:.2f} vs {auc['random']:.2f}; lower is better)"
        + (_CLOSE_NOTE if abs(auc["gradcam"] - auc["random"]) < DELETION_CLOSE else ""),
    )


def sanity_check(folder: layout.AnalysisFolder) -> Check | None:
    """The randomisation sanity check (records.SANITY): passes only when every method's maps depend on the weights.

    The badge counts the methods ("5 of 10 passed"): one method's verdict must not
    stand for all of them.
    """
    verdicts = (_record(folder, "sanity") or {}).get("methods") or {}
    if not verdicts:
        return None
    passed = sorted(m for m, v in verdicts.items() if v.get("passed"))
    failed = sorted(m for m, v in verdicts.items() if not v.get("passed"))
    return Check(
        "randomisation sanity",
        not failed,
        f"{len(passed)} of {len(verdicts)} methods passed; maps that change when the weights are shuffled "
        f"(trustworthy): {', '.join(passed) or 'none'}"
        + (f"; maps that barely change (they show the image, not the model): {', '.join(failed)}" if failed else ""),
        f"{len(passed)} of {len(verdicts)} passed",
    )


def border_check(folder: layout.AnalysisFolder) -> Check | None:
    """The model-side shortcut check (records.BORDER_MASS): fails when a class is decided mostly from the border."""
    found = _record(folder, "border_mass")
    if not found or not found.get("statement"):
        return None
    return Check("border shortcut", not found["flagged"], found["statement"])


CHECKS: tuple[Callable[[layout.AnalysisFolder], Check | None], ...] = (
    pointing_check,
    deletion_check,
    sanity_check,
    border_check,
)


def _ci(info: dict) -> str:
    lo, hi = collect.number(info.get("test_ci95_low")), collect.number(info.get("test_ci95_high"))
    return f" (95% CI {lo:.2f}–{hi:.2f})" if lo is not None and hi is not None else ""


def worse_calibrated(cal: dict) -> bool:
    """Temperature scaling raised the test ECE (a temperature fitted on val need not carry over)."""
    return float(cal["ece_after"]) > float(cal["ece_before"])


def model_line(backbone: str, info: dict, folder: layout.AnalysisFolder | None) -> dict:
    """The analysed model of one backbone: its test accuracy with the CI, then run, calibration, seeds."""
    acc = collect.number(info.get("test_accuracy"))
    headline = f"Test accuracy {acc:.3f}{_ci(info)}" if acc is not None else "No test accuracy recorded"
    details = [f"{info['run']} ({info['strategy']})" if info.get("strategy") else info["run"]]
    cal = _record(folder, "calibration")
    if cal:
        details.append(
            f"ECE {cal['ece_before']:.3f} → {cal['ece_after']:.3f} after temperature scaling "
            f"(T = {cal['temperature']:.2f}, fitted on the validation split)"
            + (": worse than as trained, keep the uncalibrated probabilities" if worse_calibrated(cal) else "")
        )
    seeds = collect.number(info.get("seeds"))
    if seeds and seeds > 1:
        details.append(f"{seeds} seeds, mean val accuracy {info['val_accuracy_seed_mean']:.3f}")
    frozen = _record(folder, "frozen")
    change = _record(folder, "cka")
    return {
        "headline": headline,
        "details": details,
        "frozen": frozen.get("statement") if frozen and frozen.get("frozen_blocks") else None,
        "change": change.get("statement") if change else None,  # representation change per block (CKA)
        "robustness": (_record(folder, "corruptions") or {}).get("statement"),
    }


def strategy_lines(backbone: str, comparisons: list[dict]) -> list[dict]:
    """Every pair of strategies the grid summary compared for this backbone.

    Every pair, not only those with a fine-tuned run: with scratch and features alone,
    leaving a pair out would headline one strategy while a better one goes unsaid.
    """
    lines = []
    for row in comparisons:
        if row.get("backbone") != backbone:
            continue
        p = collect.number(row.get("p_value"))
        lines.append(
            {
                "pair": f"{row['strategy_a']} vs {row['strategy_b']}",
                "text": row.get("statement") or "",
                "significant": str(row.get("significant")).lower() == "true" if p is not None else None,
            }
        )
    return lines


def backbone_card(backbone: str, info: dict, results: Path, comparisons: list[dict], analysed: bool = True) -> dict:
    """analysed: the report reads this run's analysis folder (else only the grid summary's numbers)."""
    folder = layout.Results(results).analysis(backbone, info["run"]) if analysed else None
    checks = [c for c in (check(folder) for check in CHECKS) if c is not None] if folder else []
    return {
        "backbone": backbone,
        "model": model_line(backbone, info, folder),
        "strategies": strategy_lines(backbone, comparisons),
        "checks": checks,
        "checks_passed": all(c.passed for c in checks) if checks else None,
        "checks_badge": f"{sum(c.passed for c in checks)} of {len(checks)} checks passed" if checks else None,
    }


def data_card(data: dict, results: Path | None = None) -> dict:
    from convscope.report import data_checks

    t = data["totals"]
    by = t.get("by_reason") or {}
    dups = sum(v for k, v in by.items() if "duplicate" in k)
    checks = data_checks.clean_checks(by) + (data_checks.audit_checks(Path(results)) if results else [])
    return {
        "checks": checks,
        "raw": t["raw"],
        "kept": t["kept"],
        "quarantined": t["quarantined"],
        "duplicates": dups,
        "near_duplicates": by.get("near_duplicate", 0),
        "reasons": ", ".join(f"{k} {v}" for k, v in by.items() if v) or "none",
        "splits": t["splits"],
    }


def findings(results: Path, best: dict, comparisons: list[dict], data: dict | None, *, analysed: bool = True) -> dict:
    return {
        "backbones": [backbone_card(b, info, results, comparisons, analysed) for b, info in best.items()],
        "data": data_card(data, results) if data else None,
    }
