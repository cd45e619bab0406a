"""The report's sections: one builder each, in a registry (section name -> builder).

A builder reads what it needs through `Sources` (each input read once, shared by
every builder) and returns a `Part`: the context its template shows and its
entries in the page's navigation. The page renders the parts in the order of
config report.sections' allowed values (schemas/config.schema.yaml), each with
templates/sections/{name}.html.j2.

Adding a section: a builder here registered with @builder("name"), its
template, and the name in the schema's report.sections enum.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from convscope import layout, records
from convscope.report import collect, parts
from convscope.report import findings as findings_lib

log = logging.getLogger(__name__)


@dataclass
class Part:
    context: dict  # what templates/sections/{name}.html.j2 reads as `part`
    nav: list[tuple[str, str]] = field(default_factory=list)  # (anchor, label)


@dataclass
class Sources:
    """The inputs of the page, each read at most once."""

    results: Path
    options: dict  # config report section
    config: dict
    classes: list[str]
    assets: parts.Assets
    sections: list[str]
    benchmarks: tuple[Path, ...] = ()  # Snakemake benchmark files the report rule declares (compute section)

    @property
    def paths(self) -> layout.Results:
        return layout.Results(self.results)

    @property
    def grid_dir(self) -> Path:
        return self.paths.grid_dir

    @cached_property
    def best(self) -> dict[str, records.BestRun]:
        return collect.best_runs(self.paths.best_json)

    @cached_property
    def runs(self) -> dict:
        return collect.grid_runs(self.paths.runs_csv)

    @cached_property
    def grid_sections(self) -> list[dict]:
        """The grid summary's index.json sections (runs.csv and best.json have tables of their own)."""
        index = collect.load_index(self.grid_dir, "grid summary (analysis stage)")
        secs = parts.index_sections(index, self.grid_dir, "grid", "grid", self.assets)
        return [s for s in secs if s["group"] != records.OWN_TABLE]

    @cached_property
    def comparisons(self) -> list[dict]:
        """comparisons.csv of the grid summary ([] from a summary written before it existed)."""
        path = self.paths.comparisons_csv
        return collect.read_csv(path, "grid summary (analysis stage)") if path.is_file() else []

    @cached_property
    def data(self) -> dict:
        return collect.data_summary(self.results, self.classes)

    @cached_property
    def analyses(self) -> list[dict]:
        """Each backbone's analysed run: its index.json sections and metrics."""
        out = []
        for b, info in self.best.items():
            run = info.run
            folder = self.paths.analysis_dir(b, run)
            index = collect.load_index(folder, f"analysis rules ({b} {run})")
            secs = parts.index_sections(
                index, folder, f"{parts.slug(b)}/{parts.slug(run)}", f"bb-{parts.slug(b)}", self.assets
            )
            out.append(
                {
                    "name": b,
                    "run": run,
                    "info": info,
                    "index": index,
                    "sections": secs,
                    "metrics": collect.metrics(self.results, b, run),
                    "anchor": f"bb-{parts.slug(b)}",
                }
            )
        return out

    def training_env(self) -> list[dict]:
        """Versions recorded by the analysed runs (one entry per distinct set)."""
        if not self.sections_need_analyses():
            return []
        envs = []
        for a in self.analyses:
            if a["metrics"].versions:
                env = {str(k): str(v) for k, v in a["metrics"].versions.items()}
                if env not in [e["versions"] for e in envs]:
                    envs.append({"runs": f"{a['name']} {a['run']}", "versions": env})
        return envs

    def sections_need_analyses(self) -> bool:
        return bool({"backbones", "explanations"} & set(self.sections))

    @cached_property
    def by_strategy(self) -> dict[str, list[dict]]:
        """Each backbone's strategies side by side (convscope.report.by_strategy), read with the analyses."""
        from convscope.report import by_strategy

        return by_strategy.load(self.results, self.best, self.assets) if self.sections_need_analyses() else {}


BUILDERS: dict[str, Callable[[Sources], Part]] = {}


def builder(name: str):
    def register(fn):
        BUILDERS[name] = fn
        return fn

    return register


@builder("findings")
def findings(src: Sources) -> Part:
    """The cards that open the page, from what the other requested sections read."""
    has_grid = bool(set(parts.NEEDS_GRID) & set(src.sections))
    cards = findings_lib.findings(
        src.results,
        {b: info.fields() for b, info in src.best.items()} if has_grid else {},
        src.comparisons if has_grid else [],
        src.data if "data" in src.sections else None,
        analysed=src.sections_need_analyses(),
    )
    for card in cards["backbones"]:
        card["anchor"] = f"bb-{parts.slug(card['backbone'])}" if "backbones" in src.sections else None
    return Part(cards, [("findings", "Findings")])


@builder("data")
def data(src: Sources) -> Part:
    log.info("report: data counts and %d thumbnails per class", src.options["thumbnails_per_class"])
    d = dict(src.data)
    thumbs = collect.make_thumbnails(
        src.results, d["kept_files"], src.classes, src.options["thumbnails_per_class"], src.assets.root / "thumbs"
    )
    d["thumbs"] = {c: [{**t, "path": f"{parts.ASSETS}/{t['path']}"} for t in ts] for c, ts in thumbs.items()}
    for q in d["quarantine"]:
        raw = src.paths.raw_dir / q["file"]
        on_disk = q["file"] and raw.is_file()  # rows turned away at import have no file
        q["href"] = urllib.parse.quote(os.path.relpath(raw, src.paths.report_dir)) if on_disk else None
        q["source_href"] = parts.safe_url(q["source"])
    return Part(d, [("data", "Data")])


@builder("audit")
def audit(src: Sources) -> Part:
    """Quality flags, label issues, leakage (convscope.report.audit_section), with the analysed runs' test
    accuracy when their analyses are in the report anyway."""
    from convscope.report.audit_section import build_audit

    best = {b: info.run for b, info in src.best.items()} if "backbones" in src.sections else {}
    return Part(build_audit(src.results, src.classes, src.assets, best), [("audit", "Data audit")])


@builder("grid")
def grid(src: Sources) -> Part:
    from convscope.report import by_strategy, cka_column

    best = src.best
    # CKA is read only where the report declares the analysis records as inputs (the best runs, analysed).
    analysed = {b: info.run for b, info in best.items()} if src.sections_need_analyses() else {}
    runs = cka_column.with_cka(src.runs, analysed, src.results)
    # The nested best_trained / best_features / best_any entries are runs of the table below.
    # by_strategy: the lines of the strategies-side-by-side figures, shown with each backbone.
    scalar = [
        f.name
        for f in dataclasses.fields(records.BestRun)
        if f.name not in ("run", "by_strategy") and not f.name.startswith("best_")
    ]
    return Part(
        {
            "runs": parts.runs_table(runs, best, src.results),
            "runs_note": runs.get("note"),
            "best": [{"backbone": b, **info.fields(), "anchor": f"bb-{parts.slug(b)}"} for b, info in best.items()],
            "best_columns": scalar,
            "sections": [s for s in src.grid_sections if not parts.is_check(s)]
            + by_strategy.runs_data(src.by_strategy),
        },
        [("grid", "Grid")],
    )


@builder("backbones")
def backbones(src: Sources) -> Part:
    from convscope.report import by_strategy

    items = [
        {
            "name": a["name"],
            "run": a["run"],
            "anchor": a["anchor"],
            "title": a["index"].get("title") or f"{a['name']} {a['run']}",
            "chosen_as": a["info"].chosen_as,
            "metrics": parts.scalars(a["metrics"].to_json()),
            # The run's own analyses, then its strategies side by side.
            "sections": [s for s in a["sections"] if not parts.is_check(s)]
            + by_strategy.figures(src.by_strategy, a["name"]),
        }
        for a in src.analyses
    ]
    return Part({"items": items}, [(bb["anchor"], bb["name"]) for bb in items])


@builder("explanations")
def explanations(src: Sources) -> Part:
    checks = [
        {"name": a["name"], "run": a["run"], "sections": [s for s in a["sections"] if parts.is_check(s)]}
        for a in src.analyses
    ]
    return Part(
        {
            "grid": [s for s in src.grid_sections if parts.is_check(s)],
            "backbones": [c for c in checks if c["sections"]],
        },
        [("explanations", "Explanation checks")],
    )


@builder("compute")
def compute(src: Sources) -> Part:
    if not src.benchmarks:
        log.warning("report: the compute section was handed no benchmark files (rules/common.smk report_benchmarks)")
    bench = collect.benchmarks(src.benchmarks, src.paths.benchmarks)
    throughput = []
    for row in src.runs["rows"]:
        # runs.csv has images_per_s (the grid summary copies it from metrics.json); else the run's own record.
        ips = collect.number(row.get("images_per_s"))
        b, r = row["backbone"], row["run"]
        if ips is None and src.paths.metrics(b, r).is_file():
            ips = collect.metrics(src.results, b, r).images_per_s
        throughput.append({"backbone": b, "run": r, "images_per_s": ips})
    return Part({**bench, "throughput": throughput}, [("compute", "Compute cost")])
