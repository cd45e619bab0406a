"""Recall/precision of the label-issue ranking with a known fraction of labels moved.

Reads a results tree that has prepared data and frozen-base embeddings (e.g. the demo:
`snakemake results/audit/alexnet/audit.json`), moves `--fraction` of the labels to a
random other class (a frozen base does not depend on labels, so this equals moving the
files to a wrong class folder), ranks with convscope.data.audit and prints recall at
k = number moved (= precision at k) and cleanlab's issue-set recall/precision, for each
representation: the backbones' embeddings and, as a reference, the raw pixels.
Also scores the images planted by crawl.synthetic.mislabel_fraction when the ledger has any.

    python bench/label_issues.py results --size 64 --backbones alexnet mobilenetv2 --fractions 0.05 0.1
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

from convscope import layout
from convscope.data import audit
from convscope.data.synthetic import PLANTED


def pixels(prepared: Path, side: int) -> np.ndarray:
    xs = [np.load(layout.prepared_in(prepared, s), mmap_mode="r") for s in audit.SPLITS]
    out = [np.asarray(Image.fromarray(np.asarray(img)).resize((side, side))) for x in xs for img in x]
    return np.stack(out).reshape(len(out), -1).astype(np.float32) / 255


def planted_files(results: Path) -> set[str]:
    found = set()
    for ledger in (results / "raw").glob("*/manifest.csv"):
        with open(ledger, newline="") as f:
            found |= {f"{ledger.parent.name}/{r['file']}" for r in csv.DictReader(f) if PLANTED in r["detail"]}
    return found


def score(
    name: str,
    x: np.ndarray,
    base: audit.Embedded,
    classes: list[str],
    fraction: float,
    seed: int,
    model: str = "embeddings",
) -> None:
    rng = np.random.default_rng(seed)
    labels = base.labels.copy()
    moved = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    labels[moved] = (labels[moved] + rng.integers(1, len(classes), len(moved))) % len(classes)
    data = audit.Embedded(x, labels, base.files, base.splits)
    t0 = time.perf_counter()
    issues = audit.label_issues(data, classes, folds=5, seed=seed, model=model)
    s = audit.scores(issues, {base.files[i] for i in moved})
    print(
        f"{name:>14} moved {fraction:4.0%} ({s['planted']:3d}): recall=precision@k {s['at_k']:.2f}  "
        f"issue set {s['issue_set']:4d}: recall {s['issue_recall']:.2f} precision {s['issue_precision']:.2f}  "
        f"({time.perf_counter() - t0:.1f} s; chance@k {fraction:.2f})"
    )


def digits(fractions: list[float], seed: int) -> None:
    """A real labelled set: scikit-learn's bundled 8x8 digits (1797 images), the same moved labels ranked
    from raw pixels (logistic regression) and by the audit's k-fold convnet on the scans upscaled to 32 px
    (its path without a pretrained base), side by side."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    data = audit.Embedded(x.astype(np.float32), y, [f"digit/{i}" for i in range(len(y))], np.array(["train"] * len(y)))
    grey = (x.reshape(-1, 8, 8) * 255 / 16).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(g).resize((32, 32), Image.BICUBIC).convert("RGB")) for g in grey])
    classes = [str(c) for c in range(10)]
    for fraction in fractions:
        score("digits pixels", data.x, data, classes, fraction, seed)
        score("digits convnet", images, data, classes, fraction, seed, model="cnn")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", type=Path, nargs="?", help="a results tree (omit with --digits)")
    ap.add_argument("--digits", action="store_true", help="measure on scikit-learn's digits instead")
    ap.add_argument("--size", type=int, help="prepared input size of the backbones")
    ap.add_argument("--backbones", nargs="*", default=[])
    ap.add_argument("--fractions", nargs="*", type=float, default=[0.05, 0.1])
    ap.add_argument("--pixel-side", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.digits:
        return digits(args.fractions, args.seed)
    results = layout.Results(args.results)
    prepared = results.prepared_dir(args.size)
    with open(results.prepared(args.size, "train", layout.PREPARED_INDEX), newline="") as f:
        rows = list(csv.DictReader(f))
    reps = {}
    for b in args.backbones:
        reps[b] = audit.load(args.results / "features" / b, prepared)
    first = next(iter(reps.values()), None)
    classes = sorted({r["cls"] for r in rows}, key=lambda c: int(next(r["label"] for r in rows if r["cls"] == c)))
    base = first or audit.Embedded(np.zeros((0, 1)), np.zeros(0, int), [], np.array([]))
    if first is None:
        raise SystemExit("name at least one backbone with embeddings (--backbones)")
    reps[f"pixels{args.pixel_side}"] = audit.Embedded(
        pixels(prepared, args.pixel_side), base.labels, base.files, base.splits
    )
    planted = planted_files(args.results) & set(base.files)
    for name, data in reps.items():
        if planted:
            issues = audit.label_issues(data, classes, folds=5, seed=args.seed)
            s = audit.scores(issues, planted)
            print(
                f"{name:>14} planted by the crawl ({s['planted']}): recall=precision@k {s['at_k']:.2f}  "
                f"issue set {s['issue_set']}: recall {s['issue_recall']:.2f} precision {s['issue_precision']:.2f}"
            )
        for fraction in args.fractions:
            score(name, data.x, data, classes, fraction, args.seed)


if __name__ == "__main__":
    main()
