"""Render the HTML report: R/report/index.html with its files in R/report/assets/,
and optionally R/report/report-standalone.html with every image embedded (for mailing).

Templates are Jinja2 with autoescape on: every string from config, manifests,
ledgers or index.json reaches the page escaped. The page loads nothing from the
network; its CSS and JS are inlined and pinned by hash in a Content-Security-Policy,
so even a string that escaped escaping could not run a script.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import mimetypes
import os
import re
import shutil
import urllib.parse
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from convscope import atomic, layout, records
from convscope import config as cfg
from convscope.report import collect

log = logging.getLogger(__name__)


SECTIONS = tuple(cfg.section_schema("report")["sections"]["items"]["enum"])  # in page order
DEFAULTS = cfg.defaults("report")
# Sections that read the grid summary (rules/common.smk asks the same of report.sections).
NEEDS_GRID = ("grid", "backbones", "explanations", "compute")
ASSETS = "assets"
STANDALONE = "report-standalone.html"
# Data files larger than this are linked in index.html but not embedded in the
# standalone page (it is meant to be mailed).
EMBED_DATA_MAX = 512 * 1024
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


def _item(item: dict, folder: Path, dest: str, assets: Assets) -> dict:
    """One index.json item ready for the template (its files copied to assets)."""
    out = {"kind": item["kind"], "caption": item.get("caption") or "", "name": Path(item["file"]).name}
    out["badges"] = list(item.get("badges") or [])  # sanity badges of the methods drawn in a figure
    out["file"] = assets.add(folder / item["file"], f"{dest}/{item['file']}")
    out["data"] = assets.add(folder / item["data"], f"{dest}/{item['data']}") if item.get("data") else None
    source = folder / item["file"]
    if item["kind"] == "table":
        if source.suffix.lower() in (".csv", ".tsv"):
            out["table"] = collect.read_table(source)
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


def build_context(
    results: Path, out_dir: Path, options: dict, *, config: dict, classes: list[str], benchmarks: Sequence[Path] = ()
) -> dict:
    """Everything the template shows, with files copied into out_dir/assets: one part per section.

    Each requested section is built by its builder in convscope.report.sections.BUILDERS.
    """
    from convscope.report.sections import BUILDERS, Sources

    results, out_dir = Path(results), Path(out_dir)
    sections = list(options["sections"])
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"config key report.sections: unknown section(s) {unknown}; allowed values: {list(SECTIONS)}")
    missing = [s for s in SECTIONS if s not in BUILDERS]
    if missing:
        raise RuntimeError(
            f"report sections {missing} are allowed by the config schema but have no builder in "
            "convscope/report/sections.py"
        )
    assets = Assets(out_dir)
    src = Sources(results, options, config, list(classes), assets, sections, tuple(map(Path, benchmarks)))
    page = [name for name in SECTIONS if name in sections]  # page order = the schema's order
    parts = {name: BUILDERS[name](src) for name in page}
    ctx = {
        "title": options["title"],
        "description": options["description"],
        "date": collect.now(),
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        "versions": collect.versions((config.get("train") or {}).get("backend")),
        "machine": collect.machine(),
        "show": {s: s in sections for s in SECTIONS},
        "assets": assets,
        "training_env": src.training_env(),
        "standalone": bool(options["self_contained"]),
        "page": page,
        "parts": {name: part.context for name, part in parts.items()},
        "nav": [entry for part in parts.values() for entry in part.nav] + [("environment", "Versions and machine")],
    }
    return ctx


def _environment(embed: bool, assets: Assets) -> Environment:
    env = Environment(
        loader=PackageLoader("convscope.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def src(rel: str) -> str:
        """An asset as the page refers to it: a relative URL, or a data: URI when embedding."""
        return assets.data_uri(rel) if embed else urllib.parse.quote(rel)

    def data_href(rel: str | None) -> str | None:
        if rel is None:
            return None
        if not embed:
            return urllib.parse.quote(rel)
        return assets.data_uri(rel) if (assets.out_dir / rel).stat().st_size <= EMBED_DATA_MAX else None

    def outside(href: str | None) -> str | None:
        """Links into the results tree beside the report: useless in a mailed file."""
        return None if embed else href

    env.filters.update(src=src, data_href=data_href, outside=outside, fmt=fmt, seconds=seconds)
    env.globals.update(embed=embed, collect=collect)
    return env


def _static(name: str) -> str:
    return resources.files("convscope.report").joinpath("static", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render_page(ctx: dict, embed: bool) -> str:
    css, js = _static("report.css"), _static("report.js") + "\n" + _static("review.js")
    img = "data:" if embed else "'self' data:"
    csp = (
        f"default-src 'none'; img-src {img}; style-src {_csp_hash(css)}; script-src {_csp_hash(js)}; "
        "base-uri 'none'; form-action 'none'"
    )
    template = _environment(embed, ctx["assets"]).get_template("report.html.j2")
    return template.render(**ctx, css=Markup(css), js=Markup(js), csp=csp)


def render_report(
    results: Path,
    out_dir: Path,
    options: dict,
    self_contained: bool | None = None,
    *,
    config: dict,
    classes: list[str] | None = None,
    benchmarks: Sequence[Path] = (),
) -> dict[str, Path]:
    """Write out_dir/index.html (+ assets/) and, if self_contained, out_dir/report-standalone.html.

    `results` is the results folder (the file layout contract); `options` the
    config's `report` section (defaults filled); `config` the whole config, shown
    collapsed in the header; `benchmarks` the Snakemake benchmark files the compute
    section reads (the report rule's declared inputs). Returns the paths written.
    """
    options = {**DEFAULTS, **(options or {})}
    if self_contained is not None:
        options["self_contained"] = self_contained
    self_contained = options["self_contained"]
    classes = list(classes if classes is not None else config["classes"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Stale figures from an earlier render must not linger beside the new page.
    shutil.rmtree(out_dir / ASSETS, ignore_errors=True)
    ctx = build_context(results, out_dir, options, config=config, classes=classes, benchmarks=benchmarks)
    written = {"html": out_dir / "index.html", "assets": out_dir / ASSETS}
    (out_dir / ASSETS).mkdir(exist_ok=True)
    atomic.write_text(written["html"], render_page(ctx, embed=False))
    files = sum(1 for p in (out_dir / ASSETS).rglob("*") if p.is_file())
    log.info("report: wrote %s (%d files in %s/)", written["html"], files, ASSETS)
    standalone = out_dir / STANDALONE
    if self_contained:
        atomic.write_text(standalone, render_page(ctx, embed=True))
        written["standalone"] = standalone
        log.info("report: wrote %s (%.1f MB, images embedded)", standalone, standalone.stat().st_size / 2**20)
    elif standalone.exists():
        standalone.unlink()
    return written
