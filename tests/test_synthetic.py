"""Synthetic source: determinism, bounding boxes that hold the object, incremental drawing."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import tiny_config
from convscope import config as cfg
from convscope import layout
from convscope.data.crawl import crawl_class
from convscope.data.synthetic import Scene, draw, png_bytes
from convscope.layout import Results
from convscope.shapes import SHAPES


def drawn(cls, shape, seed, index, with_object=True, **scene):
    """synthetic.draw with the scene's settings as keywords (schema defaults for the rest)."""
    return draw(cls, shape, seed, index, Scene.of(**scene), with_object=with_object)


def options(cls: str, max_images: int, seed: int = 7, **synthetic) -> dict:
    config = tiny_config((cls, "ring" if cls != "ring" else "star"), images=max_images, seed=seed)
    config["crawl"]["synthetic"].update(synthetic)
    cfg.load_and_validate(config)
    return cfg.crawl_params(config, cls)


def crawl(folder: Path, cls: str, max_images: int, **kw) -> dict:
    return crawl_class(cls, options(cls, max_images, **kw), folder, folder / layout.CRAWL_SUMMARY)


def boxes(folder: Path) -> dict[str, dict]:
    with open(folder / layout.BOXES, newline="") as f:
        return {r["file"]: r for r in csv.DictReader(f)}


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.png"))}


def test_shape_names_match_the_schema():
    assert SHAPES == ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "ellipse")
    schema = yaml.safe_load(cfg.SCHEMA.read_text())
    assert sorted(schema["$defs"]["crawl_options"]["properties"]["shape"]["enum"]) == sorted(SHAPES)


def test_same_seed_class_and_index_give_identical_bytes(tmp_path):
    a, b = tmp_path / "a" / "star", tmp_path / "b" / "star"
    crawl(a, "star", 12)
    crawl(b, "star", 12)
    assert len(digests(a)) == 12 and digests(a) == digests(b)
    assert (a / layout.BOXES).read_bytes() == (b / layout.BOXES).read_bytes()
    one = png_bytes(drawn("star", "star", 7, 3, size=64).image)
    assert one == png_bytes(drawn("star", "star", 7, 3, size=64).image)
    assert one == (a / "000003.png").read_bytes()  # file i is image index i
    assert one != png_bytes(drawn("star", "star", 8, 3, size=64).image)  # seed matters
    assert one != png_bytes(drawn("star", "star", 7, 4, size=64).image)  # index matters
    assert one != png_bytes(drawn("star2", "star", 7, 3, size=64).image)  # class matters, not only shape
    assert len(set(digests(a).values())) == 12


@pytest.mark.parametrize("shape", SHAPES)
def test_box_holds_exactly_the_pixels_the_object_changes(shape):
    for index in range(1, 6):
        kw = dict(size=64, noise=0.2, clutter=8)
        d = drawn(shape, shape, 11, index, **kw)
        bare = drawn(shape, shape, 11, index, with_object=False, **kw)
        diff = np.any(np.asarray(d.image, int) != np.asarray(bare.image, int), axis=2)
        ys, xs = np.nonzero(diff)
        x0, y0, x1, y1 = d.box
        assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1, (shape, index)
        # tight: the changed pixels reach (within antialiasing) every edge of the box
        assert xs.min() - x0 <= 1 and x1 - 1 - xs.max() <= 1 and ys.min() - y0 <= 1 and y1 - 1 - ys.max() <= 1
        assert 0 < x0 and x1 < 64 and 0 < y0 and y1 < 64  # the whole object is in the picture
        assert (x1 - x0) >= 64 * 0.2 and (y1 - y0) >= 64 * 0.1  # an object, not a speck


@pytest.mark.parametrize("shape", SHAPES)
def test_object_colour_only_inside_its_box_and_fills_it(shape):
    # No noise, no clutter: the object is one flat colour that the background never takes.
    d = drawn(shape, shape, 5, 1, size=96, noise=0, clutter=0)
    pixels = np.asarray(d.image)
    exact = np.all(pixels == np.array(d.colour, dtype=np.uint8), axis=2)
    ys, xs = np.nonzero(exact)
    x0, y0, x1, y1 = d.box
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    assert exact.sum() >= 0.25 * (x1 - x0) * (y1 - y0)


def test_files_and_boxes_csv(tmp_path):
    folder = Results(tmp_path).raw("ring")
    summary = crawl(folder, "ring", 10, size=48, clutter=3)
    assert summary["counts"]["new"] == 10 and summary["source"] == "synthetic"
    rows = boxes(folder)
    assert sorted(rows) == [f"{i:06d}.png" for i in range(1, 11)]
    for name, r in rows.items():
        with Image.open(folder / name) as img:
            assert img.format == "PNG" and img.mode == "RGB" and img.size == (48, 48)
        assert (int(r["width"]), int(r["height"])) == (48, 48)
        x0, y0, x1, y1 = (int(r[k]) for k in ("x0", "y0", "x1", "y1"))
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48
        d = drawn("ring", "ring", 7, int(name[:6]), size=48, noise=0.15, clutter=3)
        assert (x0, y0, x1, y1) == d.box
    with open(folder / layout.LEDGER, newline="") as f:
        ledger = list(csv.DictReader(f))
    assert [r["url_or_path"] for r in ledger] == [f"synthetic:ring/seed=7/index={i}" for i in range(1, 11)]
    assert {r["status"] for r in ledger} == {"ok"}


def test_more_images_later_draws_only_the_next_indices(tmp_path):
    folder = Results(tmp_path).raw("cross")
    crawl(folder, "cross", 5, size=32)
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}
    first_boxes = boxes(folder)
    again = crawl(folder, "cross", 9, size=32)
    assert again["counts"]["existing"] == 5 and again["counts"]["new"] == 4
    assert {n: p.stat().st_mtime_ns for n, p in ((p.name, p) for p in folder.glob("*.png")) if n in before} == before
    grown = boxes(folder)
    assert len(grown) == 9 and all(grown[k] == v for k, v in first_boxes.items())
    # incremental == all at once
    fresh = tmp_path / "fresh" / "cross"
    crawl(fresh, "cross", 9, size=32)
    assert digests(fresh) == digests(folder)
    assert (fresh / layout.BOXES).read_bytes() == (folder / layout.BOXES).read_bytes()


def _box_fill(d) -> float:
    """The share of the object's bounding box its pixels cover (1 for an upright square)."""
    x0, y0, x1, y1 = d.box
    return float(d.alpha[y0:y1, x0:x1].mean())


def test_rotation_range_draws_upright_shapes():
    upright = [drawn("square", "square", 3, i, size=96, rotation=(0, 0)) for i in range(8)]
    turned = [drawn("square", "square", 3, i, size=96) for i in range(8)]
    assert min(_box_fill(d) for d in upright) > 0.9, [round(_box_fill(d), 2) for d in upright]
    assert min(_box_fill(d) for d in turned) < 0.75, [round(_box_fill(d), 2) for d in turned]
    # Upright triangles point up: the top row of the box is covered only near its centre.
    tri = drawn("triangle", "triangle", 3, 0, size=96, rotation=(0, 0))
    x0, y0, x1, _ = tri.box
    cols = np.flatnonzero(tri.alpha[y0] > 0.05)
    assert abs(cols.mean() - (x0 + x1) / 2) < 2 and len(cols) < (x1 - x0) / 4


def _covers_centre(box, size: int) -> bool:
    """Whether the box (pixel edges) holds the pixel the pointing game's centre map points at."""
    c = (size - 1) // 2
    x0, y0, x1, y1 = box
    return x0 <= c < x1 and y0 <= c < y1


def test_off_centre_objects_leave_the_middle_free_at_the_stated_rate(tmp_path):
    size, n = 64, 60
    kw = {"size": size, "object_size": (0.17, 0.21), "rotation": (0, 0)}
    anywhere = [drawn("circle", "circle", 3, i, **kw) for i in range(n)]
    half = [drawn("circle", "circle", 3, i, off_centre=0.5, **kw) for i in range(n)]
    every = [drawn("cross", "cross", 3, i, off_centre=1.0, **kw) for i in range(n)]
    centred = lambda drawings: np.mean([_covers_centre(d.box, size) for d in drawings])
    assert centred(every) == 0
    # about half the objects that covered the middle now leave it free
    assert centred(anywhere) > 0.4 and centred(anywhere) * 0.3 < centred(half) < centred(anywhere) * 0.7
    # varied positions: objects on every side of the middle
    cx = np.array([(d.box[0] + d.box[2]) / 2 for d in every])
    cy = np.array([(d.box[1] + d.box[3]) / 2 for d in every])
    assert min((cx < 28).sum(), (cx > 36).sum(), (cy < 28).sum(), (cy > 36).sum()) >= 5
    # the key travels from the config and is named in the ledger detail; 0 leaves the params as they were
    assert "off_centre" not in options("circle", 4)["synthetic"]
    assert options("circle", 4, off_centre=0.5, object_size=[0.18, 0.22])["synthetic"]["off_centre"] == 0.5
    source = tiny_config(("circle", "cross"), images=4)
    source["crawl"]["synthetic"]["off_centre"] = 0.5
    source["pretrain"] = {"classes": {"star": {}, "ring": {}}}
    cfg.load_and_validate(source)
    assert "off_centre" not in cfg.crawl_params(source, "star")["synthetic"]  # sources drawn as before
    # an object too large to leave the middle free is drawn smaller, just fitting beside it
    large = [drawn("circle", "circle", 3, i, size=size, object_size=(0.4, 0.45), off_centre=1.0) for i in range(12)]
    assert centred(large) == 0 and max(d.box[2] - d.box[0] for d in large) >= size / 2 - 8


def _clearance(box, size: int) -> float:
    """How far the box (pixel edges) keeps clear of the image's middle row or column, on the side it keeps free."""
    x0, y0, x1, y1 = box
    mid = size / 2
    return max(x0 - mid, mid - x1, y0 - mid, mid - y1)


def test_off_centre_gap_keeps_boxes_clear_of_the_middle_by_its_share_of_the_side():
    size, n = 96, 40
    kw = {"size": size, "object_size": (0.3, 0.45), "rotation": (0, 0), "off_centre": 1.0}
    default = [drawn("circle", "circle", 3, i, **kw) for i in range(n)]
    wide = [drawn("circle", "circle", 3, i, off_centre_gap=0.1, **kw) for i in range(n)]
    # box edges are whole pixels around the drawn coverage: at most 1 px nearer than the gap
    assert min(_clearance(d.box, size) for d in wide) >= 0.1 * size - 1
    assert min(_clearance(d.box, size) for d in default) < 0.1 * size - 1
    # still varied: objects on every side of the middle
    cx = np.array([(d.box[0] + d.box[2]) / 2 for d in wide])
    cy = np.array([(d.box[1] + d.box[3]) / 2 for d in wide])
    assert min((cx < size / 2).sum(), (cx > size / 2).sum(), (cy < size / 2).sum(), (cy > size / 2).sum()) >= 5
    # the key travels to the target classes' params (and their ledger detail), not to pretraining sources
    assert options("circle", 4, off_centre=0.5, off_centre_gap=0.1)["synthetic"]["off_centre_gap"] == 0.1
    assert "off_centre_gap" not in options("circle", 4, off_centre=0.5)["synthetic"]
    source = tiny_config(("circle", "cross"), images=4)
    source["crawl"]["synthetic"].update(off_centre=0.5, off_centre_gap=0.1)
    source["pretrain"] = {"classes": {"star": {}, "ring": {}}}
    cfg.load_and_validate(source)
    assert "off_centre_gap" not in cfg.crawl_params(source, "star")["synthetic"]
