"""Each quality flag on a constructed image, through the clean stage on real files."""

from __future__ import annotations

import csv

import numpy as np
from PIL import Image, ImageFilter

from convscope.data.clean import clean
from convscope.layout import Results
from tests import images

OPTIONS = {"min_side": 16, "max_pixels": 50_000_000, "near_copy": 0}


def blocks(seed, size=(96, 96), cell=8):
    return images.blocks(seed, size, cell, colours=(40, 216))  # mid-range colours: no flag of their own


def test_each_flag_on_a_constructed_image(tmp_path):
    cls = Results(tmp_path).raw("thing")
    cls.mkdir(parents=True)
    for i in range(6):  # ordinary colour images: no flag
        Image.fromarray(blocks(i)).save(cls / f"ok{i}.png")
    Image.fromarray(blocks(10)).filter(ImageFilter.GaussianBlur(6)).save(cls / "blurry.png")
    Image.fromarray(blocks(11) // 12).save(cls / "dark.png")
    Image.fromarray(255 - blocks(12) // 14).save(cls / "bright.png")
    flat = np.full((96, 96, 3), (120, 60, 200), np.uint8)
    flat[40:44, 40:44] = 0  # two gray levels: near-uniform
    Image.fromarray(flat).save(cls / "low_information.png")
    Image.fromarray(blocks(13, size=(400, 96))).save(cls / "extreme_aspect.png")
    Image.fromarray(blocks(14)).convert("L").save(cls / "grayscale.png")
    Image.fromarray(blocks(15, size=(400, 400), cell=24)).save(cls / "odd_size.png")

    rows = clean(Results(tmp_path).raw_dir, ["thing"], OPTIONS, tmp_path / "manifest.csv")
    flags = {r["file"].split("/")[1].split(".")[0]: r["flags"] for r in rows}
    for name in ("blurry", "dark", "bright", "low_information", "extreme_aspect", "grayscale", "odd_size"):
        assert flags[name] == name  # that flag and no other
    assert all(flags[f"ok{i}"] == "" for i in range(6)), flags
    with open(tmp_path / "manifest.csv", newline="") as f:
        written = {r["file"]: r for r in csv.DictReader(f)}
    assert float(written["thing/blurry.png"]["sharpness"]) < float(written["thing/ok0.png"]["sharpness"]) / 10
    assert all(r["status"] == "kept" for r in written.values())  # flags only: nothing removed


def test_thresholds_come_from_config(tmp_path):
    cls = Results(tmp_path).raw("thing")
    cls.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(blocks(i)).save(cls / f"ok{i}.png")
    strict = {**OPTIONS, "quality": {"blur": 1e9}}  # everything counts as blurry
    rows = clean(Results(tmp_path).raw_dir, ["thing"], strict, tmp_path / "manifest.csv")
    assert [r["flags"] for r in rows] == ["blurry"] * 3
