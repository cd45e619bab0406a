"""The data spine end to end: real `snakemake` on a tiny synthetic config through prepare."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from conftest import tiny_config
from convscope import layout
from convscope.data import imageio
from convscope.layout import SPLITS

CLASSES = ("circle", "square", "triangle")
SIZE = 48  # synthetic images are 64 px: center_crop keeps everything, boxes survive
IMAGES = 20


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_snakemake_crawl_to_prepare(workflow):
    config = tiny_config(CLASSES, images=IMAGES, image_size=64, input_size=SIZE)
    wf = workflow(config)
    targets = wf.prepared(SIZE)
    assert wf.planned(*targets) == {"crawl": 3, "clean": 1, "split": 1, "prepare": 3}
    wf.run(*targets)
    R = wf.tree

    # Counts balance: every raw image file has one manifest row, kept or quarantined.
    manifest = _csv(R.clean_manifest)
    for cls in CLASSES:
        raw_files = {f"{cls}/{p.name}" for p in R.raw(cls).iterdir() if p.suffix == ".png"}
        rows = [r for r in manifest if r["cls"] == cls]
        assert {r["file"] for r in rows} == raw_files and len(rows) == len(raw_files) >= IMAGES
    status = Counter(r["status"] for r in manifest)
    assert set(status) <= {"kept", "quarantined"} and sum(status.values()) == len(manifest)
    kept = {r["file"]: r for r in manifest if r["status"] == "kept"}
    splits = {r["file"]: r for r in wf.split_rows()}
    assert set(splits) == set(kept)

    raw_boxes = {}
    for cls in CLASSES:
        for r in _csv(R.boxes(cls)):
            name = r["file"] if r["file"].startswith(f"{cls}/") else f"{cls}/{r['file']}"
            raw_boxes[name] = [float(r[k]) for k in ("x0", "y0", "x1", "y1")]

    out = R.prepared_dir(str(SIZE))
    seen = []
    for split in SPLITS:
        images = np.load(layout.prepared_in(out, split), mmap_mode="r")
        labels = np.load(layout.prepared_in(out, split, "labels.npy"))
        index = _csv(layout.prepared_in(out, split, "index.csv"))
        n = len(index)
        assert images.shape == (n, SIZE, SIZE, 3) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int32
        # Every class in every split, rows sorted by class order then file.
        assert {r["cls"] for r in index} == set(CLASSES)
        keys = [(CLASSES.index(r["cls"]), r["file"]) for r in index]
        assert keys == sorted(keys)
        for i, r in enumerate(index):
            assert int(r["row"]) == i
            assert int(r["label"]) == labels[i] == CLASSES.index(r["cls"])
            assert splits[r["file"]]["split"] == split and splits[r["file"]]["sha256"] == r["sha256"]
            # The box is in the index, inside the image, and is the raw box scaled 64 -> 48.
            box = [float(r[f"box_{k}"]) for k in ("x0", "y0", "x1", "y1")]
            assert 0 <= box[0] < box[2] <= SIZE and 0 <= box[1] < box[3] <= SIZE
            assert box == pytest.approx([v * SIZE / 64 for v in raw_boxes[r["file"]]], abs=0.01)
        # Array row i is index row i's image (spot-check first and last rows).
        for i in (0, n - 1):
            raw = imageio.load_rgb(R.raw_dir / index[i]["file"])
            expected = np.asarray(imageio.resize_square(raw, SIZE, "center_crop"))
            assert np.array_equal(images[i], expected), index[i]["file"]
        assert images[0].std() > 5  # real image content, not a blank array
        seen += [r["file"] for r in index]
    assert sorted(seen) == sorted(splits)  # every kept image prepared exactly once
    for split in SPLITS:  # one prepare job per split
        n = sum(r["split"] == split for r in splits.values())
        assert f"preparing {n} images" in R.log("prepare", str(SIZE), split).read_text()
        assert R.benchmark("prepare", str(SIZE), split).exists()

    # Nothing left to do.
    assert wf.planned(*targets) == {}

    # A prepare setting re-runs prepare only.
    before = {p.name: p.stat().st_mtime_ns for p in R.raw("circle").iterdir()}
    split_mtimes = [p.stat().st_mtime_ns for p in R.split_lists]
    config["prepare"]["resize"] = "pad"
    wf.write_config(config)
    assert wf.planned(*targets) == {"prepare": len(SPLITS)}
    wf.run(*targets)
    assert {p.name: p.stat().st_mtime_ns for p in R.raw("circle").iterdir()} == before
    assert [p.stat().st_mtime_ns for p in R.split_lists] == split_mtimes
    assert "(pad," in R.log("prepare", str(SIZE), "test").read_text()
    assert wf.planned(*targets) == {}
