"""Pieces of the report page shared by the renderer and the section builders: number and
link formatting, the assets folder, index.json items and the runs table."""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
import shutil
import urllib.parse
from pathlib import Path

from convscope import layout, records
from convscope.report import collect

# Sections that read the grid summary (rules/common.smk asks the same of report.sections).
NEEDS_GRID = ("grid", "backbones", "explanations", "compute")
ASSETS = "assets"
SAFE_SCHEMES = ("http", "https")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def fmt(value) -> str:
    """A number for a table cell: integers as is, floats to 4 significant digits."""
    n = collect.number(value)
    if n is None:
        return "" if value is None else str(value)
    if isinstance(n, int):
        return str(n)
    return f"{n:.4g}" if abs(n) < 1000 else f"{n:,.0f}"


def seconds(value) -> str:
    if value is None:
        return ""
    s = float(value)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def safe_url(url: str) -> str | None:
    """A crawled URL usable as a link (http/https only; javascript: and friends are shown as text)."""
    try:
        parts = urllib.parse.urlsplit(url or "")
    except ValueError:
        return None
    return url if parts.scheme.lower() in SAFE_SCHEMES and parts.netloc else None


class Assets:
    """Files the page shows or links, copied under out_dir/assets/ so the folder is portable."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / ASSETS
        self.copied: dict[Path, str] = {}

    def add(self, src: Path, dest: str) -> str:
        """Copy src to assets/dest (once); return the path relative to out_dir."""
        src = Path(src).resolve()
        if src in self.copied:
            return self.copied[src]
        target = self.root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        rel = f"{ASSETS}/{dest}"
        self.copied[src] = rel
        return rel

    def data_uri(self, rel: str) -> str:
        path = self.out_dir / rel
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def text_column(table: dict, column: str | None) -> tuple[dict, list[str]]:
    """(the table without `column`, that column's non-empty cells): sentences shown as text above the table.

    A column of sentences squeezed into a wide table sits off-screen and stretches
    every row; the index item names it (`text_column`) to have it read first.
    """
    if not column or column not in table["header"]:
        return table, []
    k = table["header"].index(column)
    texts = [row[k] for row in table["rows"] if k < len(row) and row[k]]
    keep = [j for j in range(len(table["header"])) if j != k]
    rows = [[row[j] for j in keep if j < len(row)] for row in table["rows"]]
    return {**table, "header": [table["header"][j] for j in keep], "rows": rows}, texts


def _item(item: dict, folder: Path, dest: str, assets: Assets) -> dict:
    """One index.json item ready for the template (its files copied to assets)."""
    out = {"kind": item["kind"], "caption": item.get("caption") or "", "name": Path(item["file"]).name}
    out["badges"] = list(item.get("badges") or [])  # sanity badges of the methods drawn in a figure
    out["file"] = assets.add(folder / item["file"], f"{dest}/{item['file']}")
    out["data"] = assets.add(folder / item["data"], f"{dest}/{item['data']}") if item.get("data") else None
    source = folder / item["file"]
    if item["kind"] == "table":
        if source.suffix.lower() in (".csv", ".tsv"):
            out["table"], out["texts"] = text_column(collect.read_table(source), item.get("text_column"))
        else:
            raise collect.ReportInputError(f"{source}: table items must be .csv files (index.json of {folder})")
    elif item["kind"] == "json":
        value = json.loads(source.read_text(encoding="utf-8"))
        # A flat mapping of numbers and words reads best as a small table.
        flat = isinstance(value, dict) and all(
            isinstance(v, (str, int, float, bool, type(None))) for v in value.values()
        )
        out["pairs"] = [(k, fmt(v)) for k, v in value.items()] if flat and len(value) <= 40 else None
        text = json.dumps(value, indent=1)
        out["json"] = text if len(text) < 20000 else text[:20000] + "\n… (truncated; see the file)"
    return out


def index_sections(index: dict, folder: Path, dest: str, anchor: str, assets: Assets) -> list[dict]:
    """An index.json's sections ready for the template (files copied to assets)."""
    return [
        {
            "id": sec.get("id", ""),
            "anchor": f"{anchor}-{slug(sec.get('id', n))}",
            "title": sec.get("title") or sec.get("id", ""),
            "group": sec["group"],  # collect.load_index checked it
            "items": [_item(it, folder, dest, assets) for it in sec.get("items", [])],
        }
        for n, sec in enumerate(index.get("sections", []))
    ]


def is_check(sec: dict) -> bool:
    return sec["group"] == records.CHECKS


def runs_table(runs: dict, best: dict[str, records.BestRun], results: Path) -> dict:
    """runs.csv as a sortable table: numbers sort as numbers, runs link to their metrics."""
    cols = runs["columns"]
    linked = "backbone" in cols and "run" in cols  # the grid summary writes both; a hand-made table may not
    rows = []
    for row in runs["rows"]:
        cells = [{"text": fmt(row[c]), "sort": collect.number(row[c])} for c in cols]
        backbone, run = (row["backbone"], row["run"]) if linked else (None, None)
        link = None
        if backbone and run:
            metrics = layout.Results(results).metrics(backbone, run)
            if metrics.is_file():
                link = urllib.parse.quote(os.path.relpath(metrics, layout.Results(results).report_dir))
        is_best = bool(backbone in best and best[backbone].run == run)
        rows.append(
            {
                "cells": cells,
                "backbone": backbone,
                "run": run,
                "metrics": link,
                "best": is_best,
                "anchor": f"bb-{slug(backbone)}",
            }
        )
    return {"columns": cols, "rows": rows, "linked": linked}


def scalars(metrics: dict) -> list[tuple[str, str]]:
    """The numbers of metrics.json worth a glance (one level of nesting: val.accuracy, hp.dropout, ...)."""
    out = []

    def add(key, value):
        if isinstance(value, bool):
            out.append((key, str(value).lower()))
        elif isinstance(value, (int, float)):
            out.append((key, fmt(value)))
        elif isinstance(value, list) and len(value) == 2 and all(collect.number(v) is not None for v in value):
            out.append((key, f"[{fmt(value[0])}, {fmt(value[1])}]"))
        elif isinstance(value, str) and len(value) < 80:
            out.append((key, value))

    for key, value in metrics.items():
        if key in ("versions", "classes", "phases"):
            continue
        if isinstance(value, dict):
            for sub, v in value.items():
                add(f"{key}.{sub}", v)
        else:
            add(key, value)
    return out
