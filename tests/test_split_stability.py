"""The split promise on real `snakemake` runs: files added to a folder source are noticed, and
existing images keep their split and status while the newcomers that collide are quarantined."""

from __future__ import annotations

import csv
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config


def blocks(seed, size=64, cell=8):
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (8, 3), dtype=np.uint8)
    idx = rng.integers(0, 8, (size // cell, size // cell))
    return palette[idx].repeat(cell, 0).repeat(cell, 1)


def patched(arr, corner, seed, size=12):
    out = arr.copy()
    y, x = corner
    out[y : y + size, x : x + size] = np.random.default_rng(seed).integers(0, 256, 3)
    return out


def save(arr, path, **kw):
    Image.fromarray(arr).save(path, **kw)


def bomb_png():
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def by_source(rows):
    return {r["source"].rsplit("/", 1)[-1]: r for r in rows if r["source"]}


@pytest.fixture
def sources(tmp_path):
    """Two class folders; cat holds A and C, apart, that one image B would bridge (near copy of both)."""
    cat, dog = tmp_path / "src" / "cat", tmp_path / "src" / "dog"
    cat.mkdir(parents=True)
    dog.mkdir()
    for i in range(14):
        save(blocks(i), cat / f"c{i:02d}.png")
        save(blocks(500 + i), dog / f"d{i:02d}.png")
    # Aligned pixel residuals (32 px): A-B 0.0144, B-C 0.0122, A-C 0.0270; the near-copy threshold is 0.02 here
    # (random blocks: the set's median nearest-neighbour residual / 10 is above the cap).
    base = blocks(114)
    save(patched(base, (0, 0), 1, 17), cat / "zA.png")
    save(patched(base, (52, 52), 2, 12), cat / "zC.png")
    # Turned away at import: the clean manifest must still list them.
    (dog / "x_vector.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>')
    (dog / "x_empty.jpg").write_bytes(b"")
    (dog / "x_bomb.png").write_bytes(bomb_png())
    shutil.copy(dog / "d00.png", dog / "x_copy.png")
    return cat, dog, base


def test_folder_additions_keep_existing_splits_and_quarantine_the_newcomers(workflow, sources):
    cat, dog, base = sources
    config = tiny_config(
        ("cat", "dog"),
        crawl={"source": "folder", "max_images": 100},
        clean={"min_side": 16, "near_copy": 10},
    )
    config["classes"] = {"cat": {"path": str(cat)}, "dog": {"path": str(dog)}}
    wf = workflow(config)
    wf.run(*wf.splits)
    R = wf.tree
    manifest1 = read(R.clean_manifest)
    splits1 = {r["file"]: r["split"] for r in wf.split_rows()}
    kept1 = {r["file"] for r in manifest1 if r["status"] == "kept"}
    assert len(kept1) == 30 and set(splits1) == kept1  # A and C are apart: both kept
    rejected = {r["source"].rsplit("/", 1)[-1]: r for r in manifest1 if r["stage"] == "import"}
    assert {k: r["reason"] for k, r in rejected.items()} == {
        "x_vector.svg": "not_an_image",
        "x_empty.jpg": "empty_file",
        "x_bomb.png": "too_large",
        "x_copy.png": "duplicate",
    }
    assert rejected["x_copy.png"]["dup_of"] == by_source(manifest1)["d00.png"]["file"]
    assert wf.planned(*wf.splits) == {}

    # New files in the folders: B bridges A and C; dog gets a near copy of a kept cat image.
    save(base, cat / "zB.png")
    save(blocks(20), cat / "zz_new.png")
    Image.fromarray(blocks(3)).resize((60, 60)).save(dog / "zz_cat_copy.jpg", quality=90)
    save(blocks(520), dog / "zz_new.png")
    assert wf.planned(*wf.splits) == {"crawl": 2, "clean": 1, "split": 1}
    wf.run(*wf.splits)
    manifest2 = read(R.clean_manifest)
    splits2 = {r["file"]: r["split"] for r in wf.split_rows()}
    rows2 = by_source(manifest2)

    assert all(splits2.get(f) == s for f, s in splits1.items()), "an existing image moved or left"
    old = {r["file"]: (r["status"], r["reason"]) for r in manifest1 if r["file"]}
    assert all((r["status"], r["reason"]) == old[r["file"]] for r in manifest2 if r["file"] in old)
    bridge = rows2["zB.png"]
    a, c = rows2["zA.png"]["file"], rows2["zC.png"]["file"]
    assert (bridge["status"], bridge["reason"], bridge["dup_of"]) == (
        "quarantined",
        "near_duplicate",
        c,  # the closer of the two
    )
    assert f"{a} (residual 0.01" in bridge["detail"] and f"{c} (residual 0.01" in bridge["detail"]
    copy = rows2["zz_cat_copy.jpg"]
    assert (copy["status"], copy["reason"], copy["dup_of"]) == (
        "quarantined",
        "ambiguous_label",
        rows2["c03.png"]["file"],
    )
    assert rows2["c03.png"]["status"] == "kept"
    assert {rows2["zz_new.png"]["status"]} == {"kept"} and len(splits2) == len(splits1) + 2
    assert len(manifest2) == len(manifest1) + 4  # every file that came in has its row
