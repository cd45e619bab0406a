"""The data-health card's checks: how many images each data check flagged, and by what criterion.

Read from what the stages wrote: the clean manifest's quarantine counts and each
audited backbone's audit.json (convscope.data.audit). A check that did not run has
no line, so the card never shows a blank where a number belongs.
"""

from __future__ import annotations

import json
from pathlib import Path

from convscope import layout

CLEAN_CHECKS = (
    ("duplicate", "exact copies", "the same bytes (sha256) as a kept image of the class", "quarantined"),
    (
        "near_duplicate",
        "near copies",
        "aligned pixel residual under the set's median nearest-neighbour residual / clean.near_copy "
        "(re-encodes, 1-2 px shifts, brightness changes, small crops; look-alikes stay)",
        "quarantined",
    ),
    (
        "ambiguous_label",
        "ambiguous labels",
        "an exact or near copy (same criterion) of a kept image of another class",
        "quarantined",
    ),
)


def clean_checks(by_reason: dict[str, int]) -> list[dict]:
    return [
        {"name": name, "flagged": int(by_reason.get(reason, 0)), "what": f"images {verb}", "criterion": criterion}
        for reason, name, criterion, verb in CLEAN_CHECKS
    ]


def audit_checks(results: Path) -> list[dict]:
    """Label issues, leakage and shortcuts per audited backbone (those with an audit.json)."""
    paths = layout.Results(results)
    root = paths.audit_dir("x").parent
    checks = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        summary_path = paths.audit_summary(folder.name)
        if not summary_path.is_file():
            continue
        s = json.loads(summary_path.read_text(encoding="utf-8"))
        checks.append(
            {
                "name": f"label issues ({folder.name})",
                "flagged": s.get("label_issues", 0),
                "what": f"of {s.get('images', 0)} images flagged",
                "criterion": s.get("label_criterion", "cleanlab on k-fold probabilities"),
            }
        )
        if "leakage_criterion" in s:
            checks.append(
                {
                    "name": f"leakage ({folder.name})",
                    "flagged": s.get("test_with_train_twin", 0),
                    "what": f"of {s.get('test_images', 0)} test images with a near copy in train "
                    f"({s.get('near_twin_pairs', 0)} val/test images with one in an earlier split)",
                    "criterion": s["leakage_criterion"],
                }
            )
        if "shortcuts" in s:
            checks.append(shortcut_check(folder.name, s["shortcuts"]))
    return checks


def shortcut_check(backbone: str, block: dict) -> dict:
    """The audit's shortcut result (convscope.data.shortcuts): a quiet line, or a warning naming property and class."""
    flagged = block.get("flagged") or []
    classes = sorted({f["class"] for f in flagged})
    return {
        "name": f"shortcuts ({backbone})",
        "flagged": len(classes),
        "what": "class(es) sorted from the rest by one simple image property alone"
        + (f" ({', '.join(classes)})" if classes else ""),
        "criterion": f"one-vs-rest AUC of a single property (brightness, colour, border against centre, size, "
        f"JPEG quality, quality flags) at or above {block.get('auc_threshold')} (config audit.shortcuts.auc)",
        # The statement names each property and class; shown as a warning only when something was found.
        "warning": block.get("statement", "") if flagged else "",
    }
