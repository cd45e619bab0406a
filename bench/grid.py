"""A real-config-shaped grid through snakemake: how close does the training phase get to its compute?

    .venv/bin/python bench/grid.py --small                      # 2 CPU cores, ~2 min
    .venv/bin/python bench/grid.py --small --repo /tmp/base     # the same grid on another checkout (A/B)
    .venv/bin/python bench/grid.py --backend jax --gpu --jobs-per-gpu 4   # GPU, config.yaml's shape

Two snakemake calls in a temporary folder, on synthetic images: the data stages
(crawl .. prepare), untimed; then the training phase (every train, embed and
features-head job of the grid), timed. Printed:

  phase wall       wall time of the training snakemake call (DAG building included)
  compute          sum over trained runs of their epochs' time (history.csv epoch_s,
                   metrics.json train_time_s): the work that has to be done
  ratio            phase wall / compute (1.0 = no fixed cost, perfectly packed)
  fixed cost/job   job wall (results/benchmarks/*.tsv) - compute, median over
                   trained runs, broken down into what the runs record
                   (metrics.json fixed_cost_s, eval_s, and "outside" = process start
                   and Snakemake's script preamble, job wall - the run's own wall_s)
  concurrency      most GPU-claiming jobs (train, embed) running at once, and the mean,
                   from job start/end (benchmark file mtime - its wall time)
  GPU utilisation  nvidia-smi samples over the phase, when nvidia-smi exists

--json PATH writes every number (and each job's record) for later comparison.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convscope import layout  # noqa: E402 - the layout is pure paths: no Keras import

RESULTS = layout.Results("results")  # relative to the work folder snakemake runs in
GPU_RULES = ("train", "embed")
SHAPES = ["circle", "square", "triangle", "star", "cross", "ellipse", "hexagon", "ring"]
# config.yaml's shape (classes x images, backbones at native size, its grid lists).
REAL = {
    "classes": 3,
    "images": 300,
    "backbones": ["alexnet:227", "vgg16:224", "resnet50:224", "inceptionv3:299"],
    "strategies": ["finetune", "progressive", "scratch", "features"],
    "learning_rate": [0.001, 0.0001],
    "tune_depth": ["2", "all"],
    "epochs": 10,
    "batch": 32,
    "classifiers": ["logreg", "linsvm"],
    "C": [0.01, 0.1, 1.0, 10.0],
}
# 2 CPU cores: 6 AlexNet@32 runs of 2 epochs, one embedding pass, 2 heads.
SMALL = {
    "classes": 3,
    "images": 30,
    "backbones": ["alexnet:32"],
    "strategies": ["finetune", "scratch", "features"],
    "learning_rate": [0.001, 0.0003, 0.0001],
    "tune_depth": ["1"],
    "epochs": 2,
    "batch": 16,
    "classifiers": ["logreg", "linsvm"],
    "C": [1.0],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--small",
        action="store_true",
        help="the 2-CPU-core shape (defaults: config.yaml's shape)",
    )
    p.add_argument("--classes", type=int)
    p.add_argument("--images", type=int, help="images per class")
    p.add_argument("--backbones", nargs="+", help="NAME:INPUT_SIZE ...")
    p.add_argument("--strategies", nargs="+")
    p.add_argument("--learning-rate", nargs="+", type=float)
    p.add_argument("--tune-depth", nargs="+")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--classifiers", nargs="+")
    p.add_argument("--C", nargs="+", type=float)
    p.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    p.add_argument("--cores", type=int, default=os.cpu_count())
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="config train.threads (cores per training job)",
    )
    p.add_argument(
        "--gpu",
        action="store_true",
        help="GPU jobs claim the GPU resource (train.gpu: true)",
    )
    p.add_argument(
        "--gpus", type=int, default=1, help="GPUs on this machine (the profile's resources scaled: gpu_share=100*N)"
    )
    p.add_argument(
        "--jobs-per-gpu",
        type=int,
        help="config train.jobs_per_gpu (left out: the code's default)",
    )
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=YAML",
        help="extra train.* config keys",
    )
    p.add_argument(
        "--repo",
        type=Path,
        default=REPO,
        help="checkout whose Snakefile and convscope run",
    )
    p.add_argument(
        "--keep",
        type=Path,
        help="work in this folder and keep it (default: a temporary one)",
    )
    p.add_argument("--json", type=Path, help="write the numbers here")
    args = p.parse_args(argv)
    shape = SMALL if args.small else REAL
    for key, value in shape.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def make_config(args) -> dict:
    backbones = {}
    for spec in args.backbones:
        name, _, size = spec.partition(":")
        backbones[name] = {
            "weights": "none",
            **({"input_size": int(size)} if size else {}),
        }
    train = {
        "backend": args.backend,
        "strategies": list(args.strategies),
        "grid": {
            "learning_rate": list(args.learning_rate),
            "dropout": [0.5],
            "tune_depth": [d if d == "all" else int(d) for d in args.tune_depth],
            "batch_size": [args.batch],
            "epochs": [args.epochs],
            "augment": ["light"],
        },
        "progressive": {"every": max(1, args.epochs // 3), "lr_decay": 0.5},
        "features": {"classifiers": list(args.classifiers), "C": list(args.C)},
        "threads": args.threads,
        "gpu": bool(args.gpu),
        "mem_mb": 1000,
        "runtime": 60,
        "bootstrap": 200,
    }
    if args.jobs_per_gpu is not None:
        train["jobs_per_gpu"] = args.jobs_per_gpu
    for item in args.set:
        key, _, value = item.partition("=")
        train[key] = yaml.safe_load(value)
    return {
        "report": {"title": "grid benchmark"},
        "seed": 1,
        "classes": {
            SHAPES[i % len(SHAPES)] + ("" if i < len(SHAPES) else str(i)): {"shape": SHAPES[i % len(SHAPES)]}
            for i in range(args.classes)
        },
        "crawl": {
            "source": "synthetic",
            "max_images": args.images,
            "synthetic": {"size": 64},
        },
        "clean": {"min_side": 16},
        "split": {"train": 0.7, "val": 0.15, "test": 0.15},
        "prepare": {"resize": "center_crop"},
        "backbones": backbones,
        "train": train,
        "analysis": {"gpu": bool(args.gpu), "threads": 1},
    }


def snakemake(args, workdir: Path, *targets: str) -> float:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(args.repo / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        str(args.cores),
        "--resources",
        *machine_resources(args),
        "--configfile",
        str(workdir / "config.yaml"),
        "--quiet",
        "rules",
        "--",
        *targets,
    ]
    env = {**os.environ, "PYTHONPATH": str(args.repo), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        logs = "\n".join(f"[{p}]\n{p.read_text()[-2000:]}" for p in sorted((workdir / "results/logs").rglob("*.log")))
        sys.exit(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n{logs[-6000:]}")
    return wall


def machine_resources(args) -> list[str]:
    """The checkout's own profiles/default resources for a machine of --gpus GPUs (gpu=N, or gpu_share=100*N)."""
    profile = yaml.safe_load((args.repo / "profiles" / "default" / "config.yaml").read_text()) or {}
    per_gpu = {"gpu": 1, "gpu_share": 100}
    return [
        f"{k}={per_gpu.get(k, v) * (args.gpus if k in per_gpu else 1)}" for k, v in profile.get("resources", {}).items()
    ]


def dry_run_targets(args, workdir: Path) -> list[str]:
    """Every train/embed/features_head output of the grid (asks the checkout's own grid expansion)."""
    code = (
        "import sys, yaml; from convscope import config as cfg, grid\n"
        "c = yaml.safe_load(open(sys.argv[1])); cfg.load_and_validate(c)\n"
        'for r in grid.runs(c): print(f"results/models/{r.backbone}/{r.id}/metrics.json")\n'
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(workdir / "config.yaml")],
        env={**os.environ, "PYTHONPATH": str(args.repo)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def prepared_targets(config) -> list[str]:
    sizes = {b.get("input_size") for b in config["backbones"].values()}
    return [str(RESULTS.prepared(s, split)) for s in sizes for split in ("train", "val", "test")]


class GpuSampler:
    """nvidia-smi utilisation and memory every 0.5 s, in a thread, while the phase runs."""

    def __init__(self):
        self.samples: list[tuple[float, float]] = []
        self.proc = None
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "-lms",
                    "500",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                util, mem = (float(v) for v in line.split(",")[:2])
                self.samples.append((util, mem))
            except ValueError:
                pass

    def stop(self) -> dict | None:
        if self.proc is None:
            return None
        self.proc.terminate()
        self.proc.wait()
        if not self.samples:
            return {"samples": 0}
        utils = [u for u, _ in self.samples]
        return {
            "samples": len(utils),
            "mean_pct": round(statistics.mean(utils), 1),
            "busy_pct": round(100 * sum(u > 0 for u in utils) / len(utils), 1),
            "max_mem_mib": max(m for _, m in self.samples),
        }


def job_records(results: Path) -> list[dict]:
    """One record per GPU job: rule, run, start/end (wall clock), wall, and what its metrics.json says."""
    jobs = []
    for rule in ("train", "evaluate", "embed", "features"):
        for tsv in sorted((results / "benchmarks" / rule).rglob("*.tsv")):
            with tsv.open() as f:
                row = next(csv.DictReader(f, delimiter="\t"))
            wall = float(row["s"])
            end = tsv.stat().st_mtime
            rec = {
                "rule": rule,
                "job": str(tsv.relative_to(results / "benchmarks")),
                "wall_s": wall,
                "start": end - wall,
                "end": end,
            }
            if rule == "train":
                backbone, run = tsv.parent.name, tsv.stem
                m = json.loads(layout.Results(results).metrics(backbone, run).read_text())
                rec.update(
                    compute_s=m["train_time_s"],
                    run_wall_s=m.get("wall_s"),
                    eval_s=m.get("eval_s"),
                    fixed=m.get("fixed_cost_s", {}),
                    env=m.get("job_env"),
                )
            jobs.append(rec)
    return jobs


def concurrency(jobs: list[dict]) -> dict:
    events = sorted([(j["start"], 1) for j in jobs] + [(j["end"], -1) for j in jobs])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    span = max(j["end"] for j in jobs) - min(j["start"] for j in jobs)
    return {
        "max": peak,
        "mean": round(sum(j["wall_s"] for j in jobs) / span, 2) if span else None,
        "span_s": round(span, 2),
    }


def fixed_breakdown(train_jobs: list[dict]) -> dict:
    """Median over trained runs of each recorded part of the fixed cost (seconds)."""
    parts: dict[str, list[float]] = {}
    for j in train_jobs:
        items = dict(j["fixed"])
        items["eval_and_save"] = j["eval_s"]
        items["outside_run (process start, script preamble)"] = j["wall_s"] - (j["run_wall_s"] or 0)
        for key, value in items.items():
            if isinstance(value, (int, float)):
                parts.setdefault(key, []).append(float(value))
    return {k: round(statistics.median(v), 3) for k, v in parts.items()}


def main(argv=None):
    args = parse_args(argv)
    args.repo = args.repo.resolve()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="convscope-grid-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = make_config(args)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = dry_run_targets(args, workdir)
    print(
        f"grid: {len(targets)} runs on {args.backbones}, {args.classes} classes x {args.images} images, "
        f"code {args.repo}, work {workdir}",
        flush=True,
    )
    t0 = time.perf_counter()
    snakemake(args, workdir, *prepared_targets(config))
    print(f"data stages: {time.perf_counter() - t0:.1f} s (not counted)", flush=True)

    sampler = GpuSampler()
    phase_wall = snakemake(args, workdir, *targets)
    gpu = sampler.stop()

    jobs = job_records(workdir / "results")
    train_jobs = [j for j in jobs if j["rule"] == "train"]
    gpu_jobs = [j for j in jobs if j["rule"] in GPU_RULES]
    compute = sum(j["compute_s"] for j in train_jobs)
    fixed = [j["wall_s"] - j["compute_s"] for j in train_jobs]
    heads = [j for j in jobs if j["rule"] == "features"]
    result = {
        "code": str(args.repo),
        "runs": len(targets),
        "trained_runs": len(train_jobs),
        "phase_wall_s": round(phase_wall, 2),
        "compute_s": round(compute, 2),
        "ratio": round(phase_wall / compute, 2) if compute else None,
        "fixed_cost_per_job_s": {
            "median": round(statistics.median(fixed), 2),
            "min": round(min(fixed), 2),
            "max": round(max(fixed), 2),
        },
        "job_wall_median_s": round(statistics.median(j["wall_s"] for j in train_jobs), 2),
        "fixed_breakdown_median_s": fixed_breakdown(train_jobs),
        "gpu_jobs_at_once": concurrency(gpu_jobs),
        "heads": {"n": len(heads), "first_start_after_phase_start_s": None},
        "gpu_utilisation": gpu,
        "jobs": jobs,
    }
    if heads and gpu_jobs:
        first = min(j["start"] for j in gpu_jobs)
        last_train = max(j["end"] for j in train_jobs)
        result["heads"] = {
            "n": len(heads),
            "started_before_last_train_end": sum(h["start"] < last_train for h in heads),
            "first_start_after_phase_start_s": round(min(h["start"] for h in heads) - first, 2),
        }
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def report(r: dict) -> None:
    print(f"training phase wall: {r['phase_wall_s']:.1f} s for {r['trained_runs']} trained runs ({r['runs']} runs)")
    print(f"sum of per-run compute (epoch time): {r['compute_s']:.1f} s")
    print(f"ratio phase wall / compute: {r['ratio']}")
    f = r["fixed_cost_per_job_s"]
    print(
        f"fixed cost per trained job (job wall - compute): median {f['median']:.2f} s "
        f"(min {f['min']:.2f}, max {f['max']:.2f}); job wall median {r['job_wall_median_s']:.2f} s"
    )
    for key, value in r["fixed_breakdown_median_s"].items():
        print(f"    {key:48s} {value:8.3f} s")
    c = r["gpu_jobs_at_once"]
    print(f"GPU jobs (train, embed) at once: max {c['max']}, mean {c['mean']} over {c['span_s']} s")
    print(f"features heads: {r['heads']}")
    g = r["gpu_utilisation"]
    print(f"GPU utilisation: {g if g is not None else 'no nvidia-smi'}")


if __name__ == "__main__":
    main()
