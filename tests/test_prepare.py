"""prepare(): real images on disk -> arrays, labels and index; geometry checked by hand."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope import layout
from convscope.data.prepare import INDEX_COLUMNS, PrepareError, PrepareJob, Source, prepare
from convscope.layout import Results

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save(raw: Path, cls: str, name: str, img: Image.Image, **kw) -> str:
    (raw / cls).mkdir(parents=True, exist_ok=True)
    img.save(raw / cls / name, **kw)
    return f"{cls}/{name}"


def _halves(w: int, h: int, left=RED, right=BLUE) -> Image.Image:
    img = Image.new("RGB", (w, h), left)
    img.paste(right, (w // 2, 0, w, h))
    return img


def _write_splits(path: Path, raw: Path, rows: list[tuple[str, str, str]]) -> Path:
    """rows: (cls, file, split)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cls", "file", "sha256", "cluster", "split"])
        for i, (cls, file, split) in enumerate(rows):
            w.writerow([cls, file, _sha(raw / file), i, split])
    return path


def _read_index(out: Path, split: str) -> list[dict]:
    with open(layout.prepared_in(out, split, "index.csv"), newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == INDEX_COLUMNS
        return list(reader)


def _box(row: dict) -> tuple[float, ...] | None:
    values = [row[f"box_{k}"] for k in ("x0", "y0", "x1", "y1")]
    return None if values == [""] * 4 else tuple(map(float, values))


@pytest.fixture
def corpus(tmp_path):
    """Three classes in config order zebra, apple, mango (not alphabetical), mixed formats."""
    raw = Results(tmp_path).raw_dir
    rows = []
    rng = np.random.default_rng(0)
    for cls, colour in (("zebra", RED), ("apple", GREEN), ("mango", BLUE)):
        for k in range(5):
            w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
            img = Image.new("RGB", (w, h), colour)
            fmt = ("png", "jpg", "webp", "bmp", "png")[k]
            if k == 4:  # palette image with transparency: flattened on white by imageio
                img = img.convert("P")
                img.info["transparency"] = img.getpixel((0, 0))  # the whole image
            name = f"{4 - k:06d}.{fmt}"  # file names sort opposite to creation order
            rows.append((cls, _save(raw, cls, name, img), ("train", "train", "train", "val", "test")[k]))
    splits = _write_splits(tmp_path / "splits.csv", raw, rows)
    return raw, splits, ["zebra", "apple", "mango"]


def test_arrays_labels_and_index(corpus, tmp_path):
    raw, splits, classes = corpus
    out = Results(tmp_path).prepared_dir("32")
    summary = prepare(Source(splits, raw, classes), 32, {"resize": "center_crop"}, out, PrepareJob(threads=2))
    assert {s: v["images"] for s, v in summary.items()} == {"train": 9, "val": 3, "test": 3}
    expected_colour = {"zebra": RED, "apple": GREEN, "mango": BLUE}
    for split, n in (("train", 9), ("val", 3), ("test", 3)):
        images = np.load(layout.prepared_in(out, split), mmap_mode="r")
        assert isinstance(images, np.memmap)
        assert images.shape == (n, 32, 32, 3) and images.dtype == np.uint8
        labels = np.load(layout.prepared_in(out, split, "labels.npy"))
        assert labels.dtype == np.int32 and labels.shape == (n,)
        index = _read_index(out, split)
        assert [int(r["row"]) for r in index] == list(range(n))
        # Sorted by config class order, then file name.
        keys = [(classes.index(r["cls"]), r["file"]) for r in index]
        assert keys == sorted(keys)
        for i, r in enumerate(index):
            assert int(r["label"]) == labels[i] == classes.index(r["cls"])
            assert r["sha256"] == _sha(raw / r["file"])
            assert _box(r) is None  # no boxes.csv in this corpus
            # The pixels are that image's (JPEG/WebP are lossy: allow a little).
            colour = expected_colour[r["cls"]]
            if r["file"].endswith(".png") and r["file"].startswith(f"{r['cls']}/000000"):
                colour = WHITE  # the transparent palette image composited on white
            assert np.abs(images[i].astype(int) - colour).max() <= 8, (r["file"], images[i].mean((0, 1)))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.{k}" for s in ("train", "val", "test") for k in ("npy", "labels.npy", "index.csv")
    )


def test_threads_do_not_change_the_output(corpus, tmp_path):
    raw, splits, classes = corpus
    a, b = tmp_path / "a", tmp_path / "b"
    prepare(Source(splits, raw, classes), 24, {"resize": "pad"}, a, PrepareJob(threads=1))
    prepare(Source(splits, raw, classes), 24, {"resize": "pad"}, b, PrepareJob(threads=4))
    for f in sorted(a.iterdir()):
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name


# Geometry, worked out by hand: a 100x50 image, left half red, right half blue, with a
# green object at (60, 10)-(80, 40) recorded in boxes.csv; prepared at size 50.
#   center_crop: crop x 25..75 at scale 1 -> red x<25, blue x>=25, box (35, 10, 50, 40)
#                (clipped at the crop's right edge)
#   pad: scale 0.5 -> 50x25 at y offset 12 -> black bands, box (30, 17, 40, 32)
#   squash: x scale 0.5, y scale 1 -> box (30, 10, 40, 40)
GEOMETRY = {
    "center_crop": {"box": (35, 10, 50, 40), "red": (5, 25), "blue": (30, 45), "black": None},
    "pad": {"box": (30, 17, 40, 32), "red": (5, 24), "blue": (45, 24), "black": (25, 3)},
    "squash": {"box": (30, 10, 40, 40), "red": (5, 25), "blue": (45, 25), "black": None},
}


@pytest.fixture
def boxed(tmp_path):
    raw = Results(tmp_path).raw_dir
    img = _halves(100, 50)
    img.paste(GREEN, (60, 10, 80, 40))
    rows = [("thing", _save(raw, "thing", "a.png", img), "train")]
    # An object entirely in the part center_crop removes.
    img2 = _halves(100, 50)
    img2.paste(GREEN, (2, 5, 12, 45))
    rows.append(("thing", _save(raw, "thing", "b.png", img2), "train"))
    # A class without boxes.csv, and a box row for a file not in the splits (ignored).
    rows.append(("other", _save(raw, "other", "c.png", _halves(50, 50)), "train"))
    (raw / "thing" / layout.BOXES).write_text(
        "file,x0,y0,x1,y1,width,height\na.png,60,10,80,40,100,50\nb.png,2,5,12,45,100,50\nzzz.png,1,1,2,2,100,50\n"
    )
    splits = _write_splits(tmp_path / "splits.csv", raw, rows)
    return raw, splits, ["thing", "other"]


@pytest.mark.parametrize("policy", sorted(GEOMETRY))
def test_resize_policy_and_box_mapping(boxed, tmp_path, policy):
    raw, splits, classes = boxed
    out = tmp_path / policy
    prepare(Source(splits, raw, classes), 50, {"resize": policy}, out, PrepareJob(threads=2))
    images = np.load(layout.prepared_in(out, "train"))
    index = _read_index(out, "train")
    assert [r["file"] for r in index] == ["thing/a.png", "thing/b.png", "other/c.png"]
    want = GEOMETRY[policy]
    box = _box(index[0])
    assert box == pytest.approx(want["box"], abs=0.01)
    a = images[0].astype(int)
    x0, y0, x1, y1 = (round(v) for v in box)
    # The object's pixels are where its box says (interior, away from resampled edges).
    assert np.abs(a[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] - GREEN).max() <= 10
    for colour, name in ((RED, "red"), (BLUE, "blue")):
        x, y = want[name]
        assert np.abs(a[y, x] - colour).max() <= 10, (name, a[y, x])
    if want["black"]:
        x, y = want["black"]
        assert a[y, x].max() == 0
    # Box b: cropped away by center_crop (empty columns); kept by pad and squash.
    box_b = _box(index[1])
    if policy == "center_crop":
        assert box_b is None
    else:
        assert box_b is not None and 0 <= box_b[0] < box_b[2] <= 50 and 0 <= box_b[1] < box_b[3] <= 50
    assert _box(index[2]) is None  # class without boxes.csv


def test_exif_orientation_is_applied(tmp_path):
    raw = Results(tmp_path).raw_dir
    # Stored 60x30 left red / right blue; orientation 6 displays it rotated 90 degrees
    # clockwise: 30x60 with red on top, blue below.
    exif = Image.Exif()
    exif[0x0112] = 6
    rows = [("a", _save(raw, "a", "x.jpg", _halves(60, 30), exif=exif.tobytes(), quality=95), "train")]
    rows.append(("b", _save(raw, "b", "y.png", _halves(30, 30)), "train"))
    splits = _write_splits(tmp_path / "splits.csv", raw, rows)
    prepare(Source(splits, raw, ["a", "b"]), 32, {"resize": "squash"}, tmp_path / "out", PrepareJob(threads=1))
    a = np.load(layout.prepared_in(tmp_path / "out", "train"))[0].astype(int)
    assert np.abs(a[4, 16] - RED).max() <= 20 and np.abs(a[28, 16] - BLUE).max() <= 20


def test_camera_jpeg_draft_matches_full_decode(tmp_path):
    """Draft-mode decoding of a big JPEG stays close to a full-resolution resize."""
    raw = Results(tmp_path).raw_dir
    rng = np.random.default_rng(1)
    # Photo-like: smooth low-frequency structure plus fine noise.
    low = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(low).resize((1600, 1200), Image.Resampling.BICUBIC)).astype(np.int16)
    big = np.clip(big + rng.normal(0, 6, big.shape), 0, 255).astype(np.uint8)
    rows = [("cam", _save(raw, "cam", "p.jpg", Image.fromarray(big), quality=90), "train")]
    rows.append(("other", _save(raw, "other", "q.png", _halves(40, 40)), "val"))
    splits = _write_splits(tmp_path / "splits.csv", raw, rows)
    prepare(
        Source(splits, raw, ["cam", "other"]), 64, {"resize": "center_crop"}, tmp_path / "out", PrepareJob(threads=1)
    )
    got = np.load(layout.prepared_in(tmp_path / "out", "train"))[0].astype(float)
    full = Image.open(raw / "cam" / "p.jpg").convert("RGB").crop((200, 0, 1400, 1200))
    reference = np.asarray(full.resize((64, 64), Image.Resampling.LANCZOS)).astype(float)
    assert np.abs(got - reference).mean() < 4


def test_undecodable_kept_file_fails_naming_it(corpus, tmp_path):
    raw, _, classes = corpus
    good = _save(raw, "apple", "ok.png", Image.new("RGB", (40, 40), GREEN))
    buf = io.BytesIO()
    _halves(200, 200).save(buf, "JPEG")
    (raw / "mango" / "broken.jpg").write_bytes(buf.getvalue()[:300])  # truncated after clean?
    splits = _write_splits(tmp_path / "s.csv", raw, [("apple", good, "train"), ("mango", "mango/broken.jpg", "train")])
    out = tmp_path / "out"
    with pytest.raises(PrepareError, match=r"mango/broken\.jpg.*class 'mango'.*fails to decode"):
        prepare(Source(splits, raw, classes), 32, {"resize": "center_crop"}, out, PrepareJob(threads=2))
    assert list(out.iterdir()) == []  # no partial or temporary files left


def test_class_not_in_config_fails_naming_it(corpus, tmp_path):
    raw, splits, _ = corpus
    with pytest.raises(PrepareError, match=r"class 'mango' is not in the config's classes"):
        prepare(Source(splits, raw, ["zebra", "apple"]), 32, {"resize": "pad"}, tmp_path / "out", PrepareJob(threads=1))


def test_empty_split_gives_empty_arrays(tmp_path):
    raw = Results(tmp_path).raw_dir
    rows = [
        ("a", _save(raw, "a", "1.png", _halves(40, 40)), "train"),
        ("b", _save(raw, "b", "2.png", _halves(40, 40)), "train"),
    ]
    splits = _write_splits(tmp_path / "splits.csv", raw, rows)
    prepare(Source(splits, raw, ["a", "b"]), 16, {"resize": "squash"}, tmp_path / "out", PrepareJob(threads=1))
    assert np.load(layout.prepared_in(tmp_path / "out", "val")).shape == (0, 16, 16, 3)
    assert np.load(layout.prepared_in(tmp_path / "out", "test", "labels.npy")).shape == (0,)
    assert _read_index(tmp_path / "out", "test") == []


def test_unknown_resize_policy_names_the_key(corpus, tmp_path):
    raw, splits, classes = corpus
    with pytest.raises(PrepareError, match=r"prepare\.resize.*'stretch'.*center_crop"):
        prepare(Source(splits, raw, classes), 32, {"resize": "stretch"}, tmp_path / "out", PrepareJob(threads=1))
