"""The real job rehearsed on the CPU: config.rehearsal.yaml end to end, and what each step costs.

config.rehearsal.yaml is config.yaml with a local synthetic source (640 px images),
random-init weights, 15 images per class and one epoch: the four backbones at their
native sizes, every strategy, the default analyses and the report. This runs it with
`snakemake --cores N` in a work folder and prints, from what the run leaves behind:

  per stage / per rule   jobs, wall span (first job start to last job end), summed job
                         wall and CPU seconds (Snakemake benchmark files), longest job
  analysis steps         seconds per step and backbone (analysis timings.json and
                         explain/timings.json of each analysed run)
  peak RSS               the largest job per rule, and the largest of all against 16 GB
  Grad-CAM layer         per backbone at its native size: the layer, its map size and why
                         (convscope.analysis.explain.layer_choice.gradcam_choice)

    PYTHONPATH=. .venv/bin/python bench/rehearsal.py                  # ~30+ min on 2 cores
    PYTHONPATH=. .venv/bin/python bench/rehearsal.py --tables-only --workdir /tmp/reh
    PYTHONPATH=. .venv/bin/python bench/rehearsal.py --markdown       # tables as Markdown

The work folder (default: a new temporary folder) is kept, so its report can be opened
and a second call with --tables-only reprints the tables. On a machine shared with other
work, compare CPU seconds rather than wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convscope import config as cfg  # noqa: E402
from convscope.layout import Results  # noqa: E402

CONFIG = REPO / "config.rehearsal.yaml"
MEMORY_LIMIT_MB = 16 * 1024  # every job must fit in 16 GB at native size
# Rules by stage, in pipeline order (rules/*.smk).
STAGES = {
    "data": ("crawl", "clean", "split", "prepare"),
    "train": ("pretrain", "train", "evaluate", "embed", "features_head", "evaluate_head", "sanity"),
    "analyse": ("summarise", "features_model", "analyse", "audit"),
    "report": ("report",),
}
# Benchmark folders not named after their rule (rules/train.smk: features_head's are under features/).
RULE_OF_FOLDER = {"features": "features_head"}


def run_snakemake(workdir: Path, config: Path, cores: int) -> float:
    """The rehearsal itself; returns its wall seconds. Raises when Snakemake fails."""
    snakemake = Path(sys.executable).with_name("snakemake")
    cmd = [str(snakemake), "-s", str(REPO / "Snakefile"), "--configfile", str(config)]
    cmd += ["--directory", str(workdir), "--cores", str(cores)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with open(workdir / "rehearsal.log", "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(
            f"snakemake failed (exit {done.returncode}) after {seconds:.0f} s: see {workdir}/rehearsal.log"
        )
    return seconds


def jobs(results: Results) -> pd.DataFrame:
    """One row per job from its benchmark file: rule, job, wall s, cpu s, RSS MB, start, end."""
    rows = []
    for tsv in sorted(results.benchmarks.rglob("*.tsv")):
        rel = tsv.relative_to(results.benchmarks)
        bench = pd.read_csv(tsv, sep="\t").iloc[-1]  # the last attempt
        end = tsv.stat().st_mtime
        rows.append(
            {
                "rule": RULE_OF_FOLDER.get(rel.parts[0], rel.parts[0]) if len(rel.parts) > 1 else rel.stem,
                "job": str(rel.with_suffix("")),
                "wall_s": float(bench["s"]),
                "cpu_s": float(bench["cpu_time"]),
                "rss_mb": float(bench["max_rss"]) if bench["max_rss"] != "-" else float("nan"),
                "start": end - float(bench["s"]),
                "end": end,
            }
        )
    if not rows:
        raise SystemExit(f"no benchmark files under {results.benchmarks}: has the rehearsal run there?")
    return pd.DataFrame(rows)


def _summary(group: pd.DataFrame) -> dict:
    top = group.loc[group["rss_mb"].idxmax()] if group["rss_mb"].notna().any() else None
    return {
        "jobs": len(group),
        "span_s": round(group["end"].max() - group["start"].min(), 1),
        "job_wall_s": round(group["wall_s"].sum(), 1),
        "job_cpu_s": round(group["cpu_s"].sum(), 1),
        "longest_s": round(group["wall_s"].max(), 1),
        "peak_rss_mb": round(group["rss_mb"].max(), 0),
        "peak_job": top["job"] if top is not None else "",
    }


def per_rule(table: pd.DataFrame) -> pd.DataFrame:
    order = [r for rules in STAGES.values() for r in rules]
    rules = sorted(table["rule"].unique(), key=lambda r: (order.index(r) if r in order else len(order), r))
    return pd.DataFrame({r: _summary(table[table["rule"] == r]) for r in rules}).T


def per_stage(table: pd.DataFrame) -> pd.DataFrame:
    stage_of = {r: s for s, rules in STAGES.items() for r in rules}
    staged = table.assign(stage=table["rule"].map(lambda r: stage_of.get(r, "other")))
    names = [s for s in [*STAGES, "other"] if (staged["stage"] == s).any()]
    out = pd.DataFrame({s: _summary(staged[staged["stage"] == s]) for s in names}).T
    return out.drop(columns=["peak_job"])


def _step(name: str) -> str:
    # "feature visualization (6 channels of conv5)" -> one row for every backbone
    return re.sub(r"\s*\(.*\)$", "", name)


def analysis_steps(results: Results, backbones: list[str]) -> pd.DataFrame:
    """Seconds per analysis step (rows) and analysed run (columns: backbone, or backbone/run)."""
    columns = {}
    for b in backbones:
        folder = results.backbone_analyses(b)
        runs = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        for run in runs:
            steps = {}
            if results.analysis(b, run).timings.exists():
                cost = json.loads(results.analysis(b, run).timings.read_text())
                steps.update({_step(k): v for k, v in cost.get("steps", {}).items()})
                steps["total"] = cost.get("analysis_seconds")
            if results.analysis(b, run).explain.timings.exists():
                explain = json.loads(results.analysis(b, run).explain.timings.read_text())
                steps.update({f"  explain: {_step(k)}": v for k, v in explain.items()})
            if steps:
                columns[b if len(runs) == 1 else f"{b}/{run}"] = steps
    return pd.DataFrame(columns)


def gradcam_layers(config: dict) -> pd.DataFrame:
    """Each backbone built at its configured size: the Grad-CAM layer, its map size, and why."""
    from convscope import backbones as registry
    from convscope.analysis.explain import layer_choice
    from convscope.models.build import build_classifier

    min_side = int(config["analysis"]["min_map_side"])
    rows = {}
    for b, options in config["backbones"].items():
        size = registry.input_size(b, options or {})
        model = build_classifier(b, len(cfg.class_names(config)), input_size=size, weights="none")
        chosen, why = layer_choice.gradcam_choice(model, registry.get(b), min_side)
        rows[b] = {"input": size, "layer": chosen.name, "map": f"{chosen.height}x{chosen.width}", "why": why}
    return pd.DataFrame(rows).T


def show(title: str, frame: pd.DataFrame, markdown: bool) -> None:
    print(f"\n## {title}\n")
    if frame.empty:
        print("(none yet)")
        return
    print(frame.to_markdown() if markdown else frame.to_string(), flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--workdir", type=Path, help="work folder (default: a new temporary folder, kept)")
    p.add_argument("--tables-only", action="store_true", help="only print the tables of an earlier run")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="convscope-rehearsal-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = cfg.load_and_validate(yaml.safe_load(args.config.read_text()))
    wall = None if args.tables_only else run_snakemake(workdir, args.config.resolve(), args.cores)
    results = Results(workdir / config["results"])
    table = jobs(results)
    if wall is not None:
        print(f"\nrehearsal: {wall:.0f} s wall on --cores {args.cores} ({len(table)} jobs), in {workdir}")
    show("Per stage (span: first job start to last job end; stages overlap)", per_stage(table), args.markdown)
    show("Per rule", per_rule(table), args.markdown)
    show(
        "Analysis steps, seconds per backbone (timings.json)",
        analysis_steps(results, list(config["backbones"])),
        args.markdown,
    )
    top = table.loc[table["rss_mb"].idxmax()]
    verdict = "fits" if top["rss_mb"] <= MEMORY_LIMIT_MB else "does NOT fit"
    print(f"\nlargest job: {top['job']} at {top['rss_mb']:.0f} MB peak RSS: {verdict} in 16 GB")
    show("Grad-CAM layer per backbone (at its configured input size)", gradcam_layers(config), args.markdown)
    print(f"\nreport: {results.report_page}")


if __name__ == "__main__":
    main()
