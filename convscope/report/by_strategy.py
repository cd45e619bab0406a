"""Each backbone's strategies side by side in the report (the strategy_change job's folders).

The figures (CKA against depth, accuracy under corruptions) go with their backbone; the
corruption table goes with the runs data in the grid part. The report reads these
folders when it shows the analyses (rules/common.smk report_inputs declares them then).
"""

from __future__ import annotations

import logging
from pathlib import Path

from convscope import layout, records
from convscope.report import collect, parts

log = logging.getLogger(__name__)


def load(results: Path, backbones, assets: parts.Assets) -> dict[str, list[dict]]:
    """{backbone: its by_strategy index sections, files copied to assets}; a backbone without a folder is left out."""
    out = {}
    for b in backbones:
        folder = layout.Results(results).by_strategy(b)
        if not folder.index.is_file():
            # A results tree from before the strategy_change rule existed.
            log.info("report: no %s; strategies side by side not shown for %s", folder.index, b)
            continue
        index = collect.load_index(folder.path, f"strategy_change rule ({b})")
        out[b] = parts.index_sections(index, folder.path, f"by_strategy/{parts.slug(b)}", f"bb-{parts.slug(b)}", assets)
    return out


def _only(sections: list[dict], kind: str) -> list[dict]:
    kept = [{**s, "items": [it for it in s["items"] if it["kind"] == kind]} for s in sections]
    return [s for s in kept if s["items"]]


def figures(loaded: dict[str, list[dict]], backbone: str) -> list[dict]:
    """The backbone's figure sections (the tables go to the runs data)."""
    return _only(loaded.get(backbone, []), "image")


def runs_data(loaded: dict[str, list[dict]]) -> list[dict]:
    """One section with every backbone's corruption table, for the grid part."""
    items = [it for secs in loaded.values() for s in _only(secs, "table") for it in s["items"]]
    if not items:
        return []
    return [
        {
            "id": "by_strategy_tables",
            "anchor": "grid-by-strategy-tables",
            "title": "Accuracy under corruptions, per strategy's best run",
            "group": records.RESULTS,
            "items": items,
        }
    ]
