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
import logging
import shutil
import urllib.parse
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from convscope import atomic, layout
from convscope import config as cfg
from convscope.report import collect, parts
from convscope.report.sections import BUILDERS, Sources

log = logging.getLogger(__name__)


SECTIONS = tuple(cfg.section_schema("report")["sections"]["items"]["enum"])  # in page order
DEFAULTS = cfg.defaults("report")
STANDALONE = layout.STANDALONE
# Data files larger than this are linked in index.html but not embedded in the
# standalone page (it is meant to be mailed).
EMBED_DATA_MAX = 512 * 1024


def build_context(
    results: Path, out_dir: Path, options: dict, *, config: dict, classes: list[str], benchmarks: Sequence[Path] = ()
) -> dict:
    """Everything the template shows, with files copied into out_dir/assets: one part per section.

    Each requested section is built by its builder in convscope.report.sections.BUILDERS.
    """
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
    assets = parts.Assets(out_dir)
    src = Sources(results, options, config, list(classes), assets, sections, tuple(map(Path, benchmarks)))
    page = [name for name in SECTIONS if name in sections]  # page order = the schema's order
    built = {name: BUILDERS[name](src) for name in page}
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
        "parts": {name: part.context for name, part in built.items()},
        "nav": [entry for part in built.values() for entry in part.nav] + [("environment", "Versions and machine")],
    }
    return ctx


def _environment(embed: bool, assets: parts.Assets) -> Environment:
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

    env.filters.update(src=src, data_href=data_href, outside=outside, fmt=parts.fmt, seconds=parts.seconds)
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
    benchmarks: Sequence[Path] = (),
) -> dict[str, Path]:
    """Write out_dir/index.html (+ assets/) and, if self_contained, out_dir/report-standalone.html.

    `results` is the results folder (the file layout contract); `options` the
    config's `report` section (defaults filled); `config` the whole config, shown
    collapsed in the header (its classes, in order, are the report's); `benchmarks` the Snakemake benchmark files the compute
    section reads (the report rule's declared inputs). Returns the paths written.
    """
    options = {**DEFAULTS, **(options or {})}
    if self_contained is not None:
        options["self_contained"] = self_contained
    self_contained = options["self_contained"]
    classes = list(config["classes"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Stale figures from an earlier render must not linger beside the new page.
    shutil.rmtree(out_dir / parts.ASSETS, ignore_errors=True)
    ctx = build_context(results, out_dir, options, config=config, classes=classes, benchmarks=benchmarks)
    written = {"html": out_dir / layout.PAGE, "assets": out_dir / parts.ASSETS}
    (out_dir / parts.ASSETS).mkdir(exist_ok=True)
    atomic.write_text(written["html"], render_page(ctx, embed=False))
    files = sum(1 for p in (out_dir / parts.ASSETS).rglob("*") if p.is_file())
    log.info("report: wrote %s (%d files in %s/)", written["html"], files, parts.ASSETS)
    standalone = out_dir / STANDALONE
    if self_contained:
        atomic.write_text(standalone, render_page(ctx, embed=True))
        written["standalone"] = standalone
        log.info("report: wrote %s (%.1f MB, images embedded)", standalone, standalone.stat().st_size / 2**20)
    elif standalone.exists():
        standalone.unlink()
    return written
