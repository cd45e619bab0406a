"""Benchmark: the project's prepare path vs a naive resize loop on camera-sized JPEGs.

    .venv/bin/python bench/prepare.py            # 500 JPEGs of 1600x1200, size 224
    .venv/bin/python bench/prepare.py --n 200 --repeat 3

Both sides process the same files in the same run, after one untimed pass that
puts them in the OS file cache:
  naive:   for each file: Image.open, convert("RGB"), resize((224, 224)), save (JPEG)
  project: convscope.data.prepare.prepare() on a splits.csv listing the same files
           (draft-mode decode, reducing_gap resize, thread pool, memmap output)
The generated JPEGs are cached under --cache (default: the temp dir) and reused.
Prints both times and the ratio; the target is >= 3x on a 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from convscope import layout
from convscope.data.prepare import PrepareJob, Source, prepare

CLASSES = ("a", "b")
VERSION = 2  # bump when the generator changes, so stale caches are not reused


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth colour fields at several scales, a few hard-edged objects, sensor-like noise.

    A photo's JPEG size (and decode cost) comes from texture and edges; flat
    synthetic images would decode unrealistically fast. At quality 90 these are
    ~0.45 MB each, like real 2-megapixel photos. Built at 1/4 scale and upsampled,
    so generating 500 takes well under a minute.
    """
    bw, bh = width // 4, height // 4
    base = np.zeros((bh, bw, 3), np.float32)
    for cells, weight in ((3, 0.5), (12, 0.3), (48, 0.15), (160, 0.05)):
        low = rng.uniform(0, 255, (cells * height // width + 1, cells + 1, 3)).astype(np.uint8)
        base += weight * np.asarray(Image.fromarray(low).resize((bw, bh), Image.Resampling.BICUBIC), np.float32)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(0, bw)), int(rng.integers(0, bh))
        x1, y1 = x0 + int(rng.integers(10, bw // 2)), y0 + int(rng.integers(10, bh // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    big = np.asarray(img.resize((width, height), Image.Resampling.BICUBIC), np.int16)
    big = big + rng.integers(-10, 11, big.shape, dtype=np.int16)
    return Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))


def make_corpus(root: Path, n: int, width: int, height: int, quality: int, seed: int) -> list[Path]:
    """n JPEGs under root/{a,b}/, generated once (missing ones only)."""
    files = []
    made = 0
    start = time.monotonic()
    for i in range(n):
        path = root / CLASSES[i % 2] / f"{i:06d}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, i])
            tmp = path.with_suffix(".part")
            photo_like(rng, width, height).save(tmp, "JPEG", quality=quality)
            tmp.rename(path)
            made += 1
            if made % 50 == 0:
                print(f"  generated {made} images ({time.monotonic() - start:.0f} s)", file=sys.stderr)
        files.append(path)
    if made:
        print(f"generated {made} JPEGs in {time.monotonic() - start:.1f} s under {root}", file=sys.stderr)
    return files


def write_splits(path: Path, root: Path, files: list[Path]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cls", "file", "sha256", "cluster", "split"])
        for i, p in enumerate(files):
            rel = p.relative_to(root).as_posix()
            split = ("train", "train", "train", "train", "train", "train", "train", "val", "test", "test")[i % 10]
            w.writerow([p.parent.name, rel, hashlib.sha256(p.read_bytes()).hexdigest(), i, split])


def naive(files: list[Path], out: Path, size: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(files):
        Image.open(p).convert("RGB").resize((size, size)).save(out / f"{i:06d}.jpg", quality=95)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="number of JPEGs (default 500)")
    ap.add_argument("--size", type=int, default=224, help="prepared side in pixels (default 224)")
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=1200)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--threads", type=int, default=4, help="prepare's thread pool (the rule's default: 4)")
    ap.add_argument("--resize", default="center_crop", choices=["center_crop", "pad", "squash"])
    ap.add_argument("--repeat", type=int, default=1, help="timed rounds; the median is reported")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "convscope-bench-jpegs")
    args = ap.parse_args(argv)

    root = args.cache / f"v{VERSION}-{args.width}x{args.height}-q{args.quality}"
    files = make_corpus(root, args.n, args.width, args.height, args.quality, seed=1234)
    mb = sum(p.stat().st_size for p in files) / 1e6
    with tempfile.TemporaryDirectory(prefix="convscope-bench-") as tmp:
        tmp = Path(tmp)
        splits = layout.Results(tmp).split_list("train")
        splits.parent.mkdir(parents=True)
        write_splits(splits, root, files)
        for p in files:  # untimed: both sides start from the OS file cache
            p.read_bytes()
        times = {"naive": [], "project": []}
        cpu = {"naive": [], "project": []}
        for r in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            naive(files, tmp / f"naive{r}", args.size)
            times["naive"].append(time.perf_counter() - t)
            cpu["naive"].append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            prepare(
                Source(splits, root, CLASSES),
                args.size,
                {"resize": args.resize},
                tmp / f"prepared{r}",
                PrepareJob(threads=args.threads),
            )
            times["project"].append(time.perf_counter() - t)
            cpu["project"].append(time.process_time() - c)
    naive_s, project_s = statistics.median(times["naive"]), statistics.median(times["project"])
    naive_cpu, project_cpu = statistics.median(cpu["naive"]), statistics.median(cpu["project"])
    print(
        f"{len(files)} JPEGs {args.width}x{args.height} q{args.quality} ({mb:.0f} MB) -> {args.size}px, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"naive loop (open, convert RGB, resize, save): {naive_s:7.2f} s wall {len(files) / naive_s:7.1f} img/s  {naive_cpu:7.2f} s CPU"
    )
    print(
        f"convscope prepare ({args.resize}, {args.threads} threads):      {project_s:7.2f} s wall {len(files) / project_s:7.1f} img/s  "
        f"{project_cpu:7.2f} s CPU"
    )
    # Wall time is the target; the CPU-time ratio shows the per-image saving alone
    # (it does not depend on how many cores other processes leave free).
    print(f"speed-up: {naive_s / project_s:.1f}x wall (target >= 3x), {naive_cpu / project_cpu:.1f}x CPU time")


if __name__ == "__main__":
    main()
