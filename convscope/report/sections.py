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

import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from convscope.report import collect, render
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
    assets: render.Assets
    sections: list[str]

    @property
    def grid_dir(self) -> Path:
        return self.results / "analysis" / "grid"

    @cached_property
    def best(self) -> dict:
        return collect.best_runs(self.grid_dir)

    @cached_property
    def runs(self) -> dict:
        return collect.grid_runs(self.grid_dir)

    @cached_property
    def grid_sections(self) -> list[dict]:
        """The grid summary's index.json sections (runs.csv and best.json have tables of their own)."""
        index = collect.load_index(self.grid_dir, "grid summary (analysis stage)")
        secs = render.index_sections(index, self.grid_dir, "grid", "grid", self.assets)
        for sec in secs:
            sec["items"] = [it for it in sec["items"] if Path(it["file"]).name not in ("runs.csv", "best.json")]
        return [s for s in secs if s["items"]]

    @cached_property
    def comparisons(self) -> list[dict]:
        """comparisons.csv of the grid summary ([] from a summary written before it existed)."""
        path = self.grid_dir / "comparisons.csv"
        return collect.read_csv(path, "grid summary (analysis stage)") if path.is_file() else []

    @cached_property
    def data(self) -> dict:
        return collect.data_summary(self.results, self.classes)

    @cached_property
    def analyses(self) -> list[dict]:
        """Each backbone's analysed run: its index.json sections and metrics."""
        out = []
        for b, info in self.best.items():
            run = info["run"]
            folder = self.results / "analysis" / b / run
            index = collect.load_index(folder, f"analysis rules ({b} {run})")
            secs = render.index_sections(
                index, folder, f"{render.slug(b)}/{render.slug(run)}", f"bb-{render.slug(b)}", self.assets
            )
            out.append(
                {
                    "name": b,
                    "run": run,
                    "info": info,
                    "index": index,
                    "sections": secs,
                    "metrics": collect.metrics(self.results, b, run),
                    "anchor": f"bb-{render.slug(b)}",
                }
            )
        return out

    def training_env(self) -> list[dict]:
        """Versions recorded by the analysed runs (one entry per distinct set)."""
        if not self.sections_need_analyses():
            return []
        envs = []
        for a in self.analyses:
            if isinstance(a["metrics"].get("versions"), dict):
                env = {str(k): str(v) for k, v in a["metrics"]["versions"].items()}
                if env not in [e["versions"] for e in envs]:
                    envs.append({"runs": f"{a['name']} {a['run']}", "versions": env})
        return envs

    def sections_need_analyses(self) -> bool:
        return bool({"backbones", "explanations"} & set(self.sections))


BUILDERS: dict[str, Callable[[Sources], Part]] = {}


def builder(name: str):
    def register(fn):
        BUILDERS[name] = fn
        return fn

    return register


@builder("findings")
def findings(src: Sources) -> Part:
    """The cards that open the page, from what the other requested sections read."""
    has_grid = bool(set(render.NEEDS_GRID) & set(src.sections))
    cards = findings_lib.findings(
        src.results,
        src.best if has_grid else {},
        src.comparisons if has_grid else [],
        src.data if "data" in src.sections else None,
        analysed=src.sections_need_analyses(),
    )
    for card in cards["backbones"]:
        card["anchor"] = f"bb-{render.slug(card['backbone'])}" if "backbones" in src.sections else None
    return Part(cards, [("findings", "Findings")])


@builder("data")
def data(src: Sources) -> Part:
    log.info("report: data counts and %d thumbnails per class", src.options["thumbnails_per_class"])
    d = dict(src.data)
    thumbs = collect.make_thumbnails(
        src.results, d["kept_files"], src.classes, src.options["thumbnails_per_class"], src.assets.root / "thumbs"
    )
    d["thumbs"] = {c: [{**t, "path": f"{render.ASSETS}/{t['path']}"} for t in ts] for c, ts in thumbs.items()}
    for q in d["quarantine"]:
        q["href"] = "../raw/" + urllib.parse.quote(q["file"]) if (src.results / "raw" / q["file"]).is_file() else None
        q["source_href"] = render.safe_url(q["source"])
    return Part(d, [("data", "Data")])


@builder("grid")
def grid(src: Sources) -> Part:
    best = src.best
    scalar = [k for info in best.values() for k, v in info.items() if k != "run" and not isinstance(v, (dict, list))]
    return Part(
        {
            "runs": render.runs_table(src.runs, best, src.results),
            "best": [{"backbone": b, **info, "anchor": f"bb-{render.slug(b)}"} for b, info in best.items()],
            "best_columns": list(dict.fromkeys(scalar)),
            "sections": [s for s in src.grid_sections if not render.is_check(s)],
        },
        [("grid", "Grid")],
    )


@builder("backbones")
def backbones(src: Sources) -> Part:
    items = [
        {
            "name": a["name"],
            "run": a["run"],
            "anchor": a["anchor"],
            "title": a["index"].get("title") or f"{a['name']} {a['run']}",
            "chosen_as": a["info"].get("chosen_as"),
            "metrics": render.scalars(a["metrics"]),
            "sections": [s for s in a["sections"] if not render.is_check(s)],
        }
        for a in src.analyses
    ]
    return Part({"items": items}, [(bb["anchor"], bb["name"]) for bb in items])


@builder("explanations")
def explanations(src: Sources) -> Part:
    checks = [
        {"name": a["name"], "run": a["run"], "sections": [s for s in a["sections"] if render.is_check(s)]}
        for a in src.analyses
    ]
    return Part(
        {
            "grid": [s for s in src.grid_sections if render.is_check(s)],
            "backbones": [c for c in checks if c["sections"]],
        },
        [("explanations", "Explanation checks")],
    )


@builder("compute")
def compute(src: Sources) -> Part:
    bench = collect.benchmarks(src.results / "benchmarks")
    throughput = []
    for row in src.runs["rows"]:
        ips = collect.images_per_second(row)
        b, r = row.get("backbone"), row.get("run") or row.get("run_id")
        if ips is None and b and r and (src.results / "models" / b / r / "metrics.json").is_file():
            ips = collect.images_per_second(collect.metrics(src.results, b, r))
        throughput.append({"backbone": b, "run": r, "images_per_s": ips})
    return Part({**bench, "throughput": throughput}, [("compute", "Compute cost")])
