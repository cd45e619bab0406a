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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose Snakefile runs (default: this one)")
    ap.add_argument("workdir", type=Path, help="emptied and used for the run")
    ap.add_argument("targets", nargs="*", default=["all"])
    args = ap.parse_args()
    sys.path.insert(0, str(args.repo.resolve() / "tests"))
    import conftest  # the tests' Workflow: the checkout's Snakefile run in its own folder

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

    edit("E1 drop an image already quarantined", [COPY])
    flagged = copy.deepcopy(wf.config)
    flagged["clean"]["quality"] = {"dark": 0.9}
    edit("E2 quality thresholds (flags only)", config=flagged)
    rows = wf.split_rows()
    test, train = one_of(rows, "test"), one_of(rows, "train")
    edit("E3 drop one test image", [COPY, test])
    edit("E4 drop one train image", [COPY, test, train])


if __name__ == "__main__":
    main()
