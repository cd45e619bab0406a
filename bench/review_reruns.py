"""What each kind of review or quality edit reruns, on a tiny offline workflow (issue 14).

Builds a tiny grid in WORKDIR with this checkout's Snakefile (3 synthetic classes x 16
images plus one planted exact copy, AlexNet@64 from scratch: a 1-epoch fine-tune and a
features head), then makes each edit and prints the dry run's plan and the jobs the real
run executed ("Finished jobid: N (Rule: X)" lines):
  E1 a review line dropping the planted copy (already quarantined as a duplicate)
  E2 new clean.quality thresholds (flags only)
  E3 a review line dropping one test image
  E4 a review line dropping one train image

    python bench/review_reruns.py /tmp/reruns results/analysis/grid/index.json results/audit/alexnet/audit.json
    python bench/review_reruns.py /tmp/reruns all          # with the analyses and the report (minutes)
    python bench/review_reruns.py --repo ../other-checkout /tmp/reruns all   # the same on another checkout

--scale N,N,...: the data stages only (crawl, clean, split, prepare; no training), at N
tiny images each (3 classes of 16x16 synthetic images, prepared at 32x32), in WORKDIR/nN.
After each edit it runs clean and split (the split lists as targets) and prints what the
dry run then plans for the prepared arrays, and at the end whether the plans are the same at every size. Split lists
pass Snakemake's 1 MB checksum limit at about 9,000 images (issue 25). Also prints the
first run's clean, split and prepare wall times (Snakemake's benchmarks), their seconds
per 1,000 images, the near-duplicate search's share of clean (its log line), and each
edit's clean rerun (it inspects every file again; the search runs only for new files).
The images come from the real crawl stage (synthetic source), about 1,000 images/s per
class job since the ledger keeps its ok count (issue 25):

    nice python bench/review_reruns.py --scale 300,15000,100000 /tmp/scale
"""

from __future__ import annotations

import argparse
import collections
import copy
import re
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLASSES = ("circle", "square", "triangle")
COPY = "circle/zz-copy.png"


def tiny(conftest):
    cfg = conftest.tiny_config(
        CLASSES,
        images=16,
        backbones={"alexnet": {"input_size": 64, "weights": "none"}},
        train=conftest.quick_train(),
        analysis=conftest.quick_analysis(),
    )
    cfg["clean"]["review"] = "review.csv"
    return cfg


def executed(proc) -> dict[str, int]:
    return dict(sorted(collections.Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", proc.stderr)).items()))


def one_of(rows: list[dict], split: str) -> str:
    """An image of `split` from the class with most images there (the split stays filled without it)."""
    counts = collections.Counter(r["cls"] for r in rows if r["split"] == split)
    cls = counts.most_common(1)[0][0]
    return next(r["file"] for r in rows if r["split"] == split and r["cls"] == cls)


def the_four_edits(wf, edit) -> None:
    """E1-E4 in order; edit(name, review_lines=None, config=None) applies one and reports it."""
    edit("E1 drop an image already quarantined", [COPY])
    flagged = copy.deepcopy(wf.config)
    flagged["clean"]["quality"] = {"dark": 0.9}
    edit("E2 quality thresholds (flags only)", config=flagged)
    rows = wf.split_rows()
    test, train = one_of(rows, "test"), one_of(rows, "train")
    edit("E3 drop one test image", [COPY, test])
    edit("E4 drop one train image", [COPY, test, train])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose Snakefile runs (default: this one)")
    ap.add_argument("--scale", help="comma-separated image counts: the data stages only, at each count")
    ap.add_argument("workdir", type=Path, help="emptied and used for the run")
    ap.add_argument("targets", nargs="*", default=["all"])
    args = ap.parse_args()
    sys.path.insert(0, str(args.repo.resolve() / "tests"))
    import conftest  # the tests' Workflow: the checkout's Snakefile run in its own folder

    if args.scale:
        plans = {int(n): scaled(conftest, args.workdir / f"n{int(n)}", int(n)) for n in args.scale.split(",")}
        same = len({repr(p) for p in plans.values()}) == 1
        print(f"plans identical at {', '.join(map(str, plans))} images: {'yes' if same else 'NO'}", flush=True)
        return
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    wf = conftest.Workflow(args.workdir.resolve(), tiny(conftest))
    wf.write_config()
    review = wf.workdir / "review.csv"
    review.write_text("file,action,new_class\n")
    wf.run(*[str(wf.layout.crawl_summary(c)) for c in CLASSES])
    raw = wf.results / "raw" / "circle"
    shutil.copy(sorted(raw.glob("*.png"))[0], wf.results / "raw" / COPY)
    start = time.monotonic()
    wf.run(*args.targets, timeout=3600)
    print(f"first run: {time.monotonic() - start:.0f} s", flush=True)

    def edit(name, lines=None, config=None):
        if lines is not None:
            review.write_text("file,action,new_class\n" + "".join(f"{f},drop,\n" for f in lines))
        if config is not None:
            wf.write_config(config)
        plan = wf.planned(*args.targets)
        start = time.monotonic()
        ran = executed(wf.run(*args.targets, timeout=3600))
        print(f"{name}\n  dry run: {plan}\n  executed: {ran} ({time.monotonic() - start:.0f} s)", flush=True)

    the_four_edits(wf, edit)


SIZE = 32  # the prepared input side of the --scale runs


def scaled_config(conftest, images: int) -> dict:
    cfg = conftest.tiny_config(
        CLASSES,
        images=images // len(CLASSES),
        image_size=16,
        backbones={"mobilenetv2": {"input_size": SIZE, "weights": "none"}},
    )
    cfg["crawl"]["synthetic"].update(clutter=0)
    cfg["clean"]["review"] = "review.csv"
    return cfg


def stage_seconds(wf) -> dict[str, float]:
    """Wall seconds of clean, split and prepare (all splits) from Snakemake's benchmark files."""

    def seconds(path) -> float:
        with open(path) as f:
            return float(f.read().splitlines()[1].split("\t")[0])

    L = wf.tree
    out = {"clean": seconds(L.benchmark("clean")), "split": seconds(L.benchmark("split"))}
    out["prepare"] = sum(seconds(L.benchmark("prepare", str(SIZE), s)) for s in ("train", "val", "test"))
    found = re.findall(r"duplicate search ([\d.]+) s", L.log("clean").read_text())
    out["dup_search"] = float(found[-1]) if found else float("nan")
    return out


def planned_jobs(wf, targets) -> list[str]:
    """The jobs a dry run plans, as `rule(wildcards)`, sorted; [] when nothing is to be done."""
    out = wf.run("-n", *targets).stdout
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", out):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if head:
            wildcards = re.search(r"wildcards: ([^\n]+)", block)
            jobs.append(f"{head.group(1)}({wildcards.group(1) if wildcards else ''})")
    return sorted(jobs)


def scaled(conftest, workdir: Path, images: int) -> dict:
    """The data stages at `images` images; returns {edit: plan after --until split}."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    wf = conftest.Workflow(workdir.resolve(), scaled_config(conftest, images))
    wf.write_config()
    review = wf.workdir / "review.csv"
    review.write_text("file,action,new_class\n")
    start = time.monotonic()
    wf.run(*[str(wf.layout.crawl_summary(c)) for c in CLASSES], timeout=7200)
    crawled = time.monotonic() - start
    shutil.copy(sorted((wf.results / "raw" / "circle").glob("*.png"))[0], wf.results / "raw" / COPY)
    targets = wf.prepared(SIZE)
    wf.run(*targets, timeout=7200)
    t = stage_seconds(wf)
    n = sum(1 for _ in (wf.results / "raw").rglob("*.png"))
    print(f"{images} images ({n} files; crawl {crawled:.0f} s, not counted):", flush=True)
    for stage in ("clean", "split", "prepare"):
        print(f"  {stage:8s} {t[stage]:8.2f} s  {1000 * t[stage] / n:6.3f} s per 1,000 images", flush=True)
    share = t["dup_search"] / t["clean"]
    print(f"  near-duplicate search {t['dup_search']:.2f} s: {share:.1%} of clean", flush=True)
    plans = {}

    def edit(name, lines=None, config=None):
        if lines is not None:
            review.write_text("file,action,new_class\n" + "".join(f"{f},drop,\n" for f in lines))
        if config is not None:
            wf.write_config(config)
        # The split lists as targets, not `--until split`: with the arrays named too,
        # Snakemake runs on past the split checkpoint once it has planned again.
        wf.run(*wf.splits, timeout=7200)
        rerun = stage_seconds(wf)["clean"]  # the benchmark file now holds this edit's clean
        plans[name] = planned_jobs(wf, targets)
        wf.run(*targets, timeout=7200)
        print(
            f"  {name}: after clean ({rerun:.1f} s) and split the dry run plans {plans[name] or 'nothing'}", flush=True
        )

    the_four_edits(wf, edit)
    lists = {p.name: p.stat().st_size for p in wf.tree.split_lists}
    print(f"  split list sizes (bytes): {lists}", flush=True)
    return plans


if __name__ == "__main__":
    main()
