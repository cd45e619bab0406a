"""The user's review decisions (config `clean.review`, e.g. review.csv), applied by clean.

One row per image: `file` as the clean manifest names it (e.g. "cat/000012.jpg"),
`action` drop | relabel, `new_class` for a relabel. The report's galleries write
this file (tick images, download). Clean applies it on top of its own decisions on
every run, so a decision survives re-crawls; a row the review changed carries it in
the manifest's `review` column and is decided afresh when the review is removed.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from convscope.data.dedup import CLUSTER_CHARS, KEPT, QUARANTINED

log = logging.getLogger(__name__)

COLUMNS = ("file", "action", "new_class")
DROP, RELABEL = "drop", "relabel"
REVIEW_DROP = "review_drop"


class ReviewError(ValueError):
    """A review file that cannot be applied as written."""


def read_review(path: Path, classes: list[str]) -> dict[str, dict]:
    """{file: {"action", "new_class"}} from a review file; errors name the line and what to do."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("file", "action") if c not in (reader.fieldnames or [])]
        if missing:
            raise ReviewError(f"{path} (config clean.review): missing column(s) {missing}; expected {list(COLUMNS)}")
        decisions = {}
        for n, row in enumerate(reader, start=2):
            file, action = (row.get("file") or "").strip(), (row.get("action") or "").strip().lower()
            new_class = (row.get("new_class") or "").strip()
            if not file:
                continue
            if action not in (DROP, RELABEL):
                raise ReviewError(f"{path} line {n}: action {action!r} for {file}; use 'drop' or 'relabel'")
            if action == RELABEL and new_class not in classes:
                raise ReviewError(
                    f"{path} line {n}: relabel of {file} to {new_class!r}, which is not a class of the config "
                    f"{classes}; put one of them in the new_class column"
                )
            decisions[file] = {"action": action, "new_class": new_class}
    return decisions


def apply_review(rows: list[dict], decisions: dict[str, dict], source: str) -> int:
    """Apply the decisions to the manifest rows in place; return how many rows changed."""
    by_file = {r["file"]: r for r in rows if r["file"]}
    unknown = sorted(set(decisions) - set(by_file))
    if unknown:
        log.warning("review %s: %d file(s) not in the manifest, ignored: %s", source, len(unknown), unknown[:10])
    changed = 0
    for file, d in decisions.items():
        r = by_file.get(file)
        if r is None:
            continue
        if d["action"] == DROP:
            r.update(review=DROP)
            if r["status"] == KEPT:
                r.update(status=QUARANTINED, reason=REVIEW_DROP, detail=f"dropped by the review in {source}")
            changed += 1
        elif r["status"] == KEPT or r["reason"] == "ambiguous_label":
            # The user names the class: an ambiguous image becomes usable under it.
            old = r["cls"]
            r.update(
                cls=d["new_class"],
                status=KEPT,
                reason="",
                dup_of="",
                review=f"relabel {old}->{d['new_class']}",
                detail=f"relabelled from {old} by the review in {source}",
            )
            r["cluster"] = r["cluster"] or r["sha256"][:CLUSTER_CHARS]
            changed += 1
        else:
            log.warning(
                "review %s: %s is quarantined as %s, so it cannot be relabelled; left as it is",
                source,
                file,
                r["reason"],
            )
    log.info("review %s: %d decisions, %d manifest rows changed", source, len(decisions), changed)
    return changed
