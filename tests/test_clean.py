"""Clean on a corpus of bad and awkward files written to disk by the test."""

import csv
import io
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from convscope import layout
from convscope.data import clean as clean_mod
from convscope.data.clean import CleanError, clean
from convscope.data.imageio import load_rgb
from convscope.layout import Results
from tests.images import blocks

OPTIONS = {"min_side": 32, "max_pixels": 50_000_000, "near_copy": 10}


def save(arr, path, **kw):
    Image.fromarray(arr).save(path, **kw)


def jpeg_bytes(arr, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **kw)
    return buf.getvalue()


def png_header_only(width, height):
    """A few hundred bytes of PNG whose header claims width x height."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# file -> (expected status, expected reason); the kept ones also get a content check.
EXPECTED = {
    "cat/cmyk.jpg": ("kept", ""),
    "cat/gray.png": ("kept", ""),
    "cat/la.png": ("kept", ""),
    "cat/palette_transparent.png": ("kept", ""),
    "cat/rgba.png": ("kept", ""),
    "cat/gray16.png": ("kept", ""),
    "cat/rotated.jpg": ("kept", ""),
    "cat/animated.gif": ("kept", ""),
    "cat/photo.webp": ("kept", ""),
    "cat/vector.svg": ("quarantined", "not_an_image"),
    "cat/pixel.png": ("quarantined", "too_small"),
    "cat/narrow.png": ("quarantined", "too_small"),
    "cat/empty.jpg": ("quarantined", "empty_file"),
    "cat/bomb.png": ("quarantined", "too_large"),
    "cat/big_header.jpg": ("quarantined", "too_large"),
    "cat/truncated.jpg": ("quarantined", "truncated"),
    "cat/page.jpg": ("quarantined", "not_an_image"),
    "cat/readme.txt": ("quarantined", "not_an_image"),
    "cat/photo_copy.webp": ("quarantined", "duplicate"),
    "cat/big.png": ("kept", ""),
    "cat/big_resized.jpg": ("quarantined", "near_duplicate"),
    "cat/shared.png": ("quarantined", "ambiguous_label"),
    "cat/shared_reencoded.jpg": ("quarantined", "ambiguous_label"),
    "dog/a.png": ("kept", ""),
    "dog/b.png": ("kept", ""),
    "dog/shared.png": ("quarantined", "ambiguous_label"),
    "dog/shared_near.jpg": ("quarantined", "ambiguous_label"),
}


@pytest.fixture
def corpus(tmp_path):
    raw = Results(tmp_path).raw_dir
    cat, dog = raw / "cat", raw / "dog"
    cat.mkdir(parents=True)
    dog.mkdir()
    gray = np.asarray(Image.fromarray(blocks(2)).convert("L"))
    expect = {}  # kept file -> expected RGB (tolerance in the test)

    Image.fromarray(blocks(1)).convert("CMYK").save(cat / "cmyk.jpg", quality=95)
    expect["cat/cmyk.jpg"] = blocks(1)
    save(gray, cat / "gray.png")
    expect["cat/gray.png"] = np.dstack([gray] * 3)
    g3 = np.asarray(Image.fromarray(blocks(3)).convert("L"))
    alpha = np.full(g3.shape, 255, np.uint8)
    alpha[:, :32] = 0
    Image.fromarray(np.dstack([g3, alpha]), "LA").save(cat / "la.png")
    want = np.dstack([g3] * 3).copy()
    want[:, :32] = 255
    expect["cat/la.png"] = want
    idx = blocks(4)[..., 0] % 4  # palette indices 0..3, 0 transparent
    pimg = Image.fromarray(idx.astype(np.uint8), "P")
    pal = [0, 0, 0, 220, 20, 60, 30, 160, 40, 20, 40, 200]
    pimg.putpalette(pal + [0] * (768 - len(pal)))
    pimg.save(cat / "palette_transparent.png", transparency=0)
    colours = np.array(pal, np.uint8).reshape(4, 3)
    colours[0] = 255
    expect["cat/palette_transparent.png"] = colours[idx]
    b5 = blocks(5)
    Image.fromarray(np.dstack([b5, np.full(b5.shape[:2], 128, np.uint8)]), "RGBA").save(cat / "rgba.png")
    expect["cat/rgba.png"] = (b5.astype(int) * 128 + 255 * 127 + 127) // 255
    g6 = np.asarray(Image.fromarray(blocks(6)).convert("L"))
    Image.fromarray(g6.astype(np.uint16) * 257).save(cat / "gray16.png")  # I;16
    expect["cat/gray16.png"] = np.dstack([g6] * 3)
    raw7 = blocks(7, size=(64, 48))
    exif = Image.Exif()
    exif[0x0112] = 6
    save(raw7, cat / "rotated.jpg", quality=95, subsampling=0, exif=exif)
    expect["cat/rotated.jpg"] = np.rot90(raw7, k=-1)
    frames = [Image.fromarray(blocks(s)).convert("P", palette=Image.Palette.ADAPTIVE) for s in (8, 9)]
    frames[0].save(cat / "animated.gif", save_all=True, append_images=frames[1:], duration=40)
    expect["cat/animated.gif"] = blocks(8)
    save(blocks(10), cat / "photo.webp", lossless=True)
    expect["cat/photo.webp"] = blocks(10)
    shutil.copy(cat / "photo.webp", cat / "photo_copy.webp")
    # Near duplicate: the same picture downsized and re-encoded.
    big = blocks(11, size=(96, 96), cell=12)
    save(big, cat / "big.png")
    expect["cat/big.png"] = big
    Image.fromarray(big).resize((80, 80), Image.Resampling.BILINEAR).save(cat / "big_resized.jpg", quality=80)
    # Not images, or not usable.
    (cat / "vector.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><circle r="9"/></svg>'
    )
    save(blocks(12, size=(1, 1)), cat / "pixel.png")
    save(blocks(13, size=(200, 20)), cat / "narrow.png")
    (cat / "empty.jpg").write_bytes(b"")
    (cat / "bomb.png").write_bytes(png_header_only(40000, 40000))
    data = bytearray(jpeg_bytes(blocks(14)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (9000).to_bytes(2, "big") * 2  # 81 Mpx: above max_pixels, below PIL's limit
    (cat / "big_header.jpg").write_bytes(bytes(data))
    noisy = np.random.default_rng(15).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = jpeg_bytes(noisy, quality=95)
    (cat / "truncated.jpg").write_bytes(full[: len(full) * 2 // 3])
    (cat / "page.jpg").write_text("<html><head><title>404</title></head><body>gone</body></html>")
    (cat / "readme.txt").write_text("images of cats\n")
    # The same picture in two classes: quarantined from both, also when re-encoded.
    shared = blocks(16)
    save(shared, cat / "shared.png")
    shutil.copy(cat / "shared.png", dog / "shared.png")
    save(shared, cat / "shared_reencoded.jpg", quality=90)
    Image.fromarray(shared).resize((56, 56)).save(dog / "shared_near.jpg", quality=85)
    save(blocks(17), dog / "a.png")
    expect["dog/a.png"] = blocks(17)
    save(blocks(18), dog / "b.png")
    expect["dog/b.png"] = blocks(18)
    # Sidecars the crawl stage writes: no rows for these.
    for folder in (cat, dog):
        (folder / layout.LEDGER).write_text("source,url_or_path,file,sha256,time,status,detail\n")
        (folder / layout.CRAWL_SUMMARY).write_text("{}")
        (folder / layout.BOXES).write_text("file,x0,y0,x1,y1,width,height\n")
    return raw, expect


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_file_gets_the_right_row(corpus, tmp_path, caplog):
    raw, expect = corpus
    out = Results(tmp_path).clean_manifest
    with caplog.at_level(logging.INFO):
        clean(raw, ["cat", "dog"], OPTIONS, out)
    rows = read(out)
    assert list(rows[0]) == clean_mod.COLUMNS
    got = {r["file"]: (r["status"], r["reason"]) for r in rows}
    assert got == EXPECTED  # exactly one row per raw file, sidecars excluded
    on_disk = {f"{p.parent.name}/{p.name}" for p in raw.glob("*/*") if p.name not in clean_mod.SIDECARS}
    assert set(got) == on_disk and len(rows) == len(on_disk)

    by_file = {r["file"]: r for r in rows}
    assert by_file["cat/photo_copy.webp"]["dup_of"] == "cat/photo.webp"
    assert by_file["cat/big_resized.jpg"]["dup_of"] == "cat/big.png"
    assert by_file["cat/big_resized.jpg"]["cluster"] == by_file["cat/big.png"]["cluster"]
    assert by_file["cat/shared.png"]["dup_of"].startswith("dog/")
    assert by_file["dog/shared.png"]["dup_of"].startswith("cat/")
    assert by_file["cat/cmyk.jpg"]["mode"] == "CMYK" and by_file["cat/gray16.png"]["mode"] == "I;16"
    assert (by_file["cat/rotated.jpg"]["width"], by_file["cat/rotated.jpg"]["height"]) == ("48", "64")
    assert "SVG" in by_file["cat/vector.svg"]["detail"] and "HTML" in by_file["cat/page.jpg"]["detail"]
    assert by_file["cat/bomb.png"]["width"] == ""  # PIL refuses it before we see the header
    assert by_file["cat/big_header.jpg"]["width"] == "9000"
    kept = [r for r in rows if r["status"] == "kept"]
    assert len({r["cluster"] for r in kept}) == len(kept)  # kept images are distinct clusters
    assert all(r["phash"] and r["sha256"] for r in kept)

    # Kept means normalised: load_rgb gives RGB with the expected content.
    assert {r["file"] for r in kept} == set(expect)
    for name, want in expect.items():
        img = load_rgb(raw / name)
        assert img.mode == "RGB" and img.size == want.shape[1::-1], name
        diff = np.abs(np.asarray(img).astype(int) - want.astype(int))
        assert diff.mean() < 4, (name, diff.mean())

    # Counts balance, and the summary says so per class.
    summary = caplog.text
    for cls, n_raw in (("cat", 23), ("dog", 4)):
        n_kept = sum(r["status"] == "kept" and r["cls"] == cls for r in rows)
        n_quar = sum(r["status"] == "quarantined" and r["cls"] == cls for r in rows)
        assert n_raw == n_kept + n_quar
        assert any(line.split()[:4] == [cls, str(n_raw), str(n_kept), str(n_quar)] for line in summary.splitlines())
    assert "ambiguous_label" in summary and "TOTAL" in summary


def test_clean_is_deterministic(corpus, tmp_path):
    raw, _ = corpus
    clean(raw, ["cat", "dog"], OPTIONS, tmp_path / "a.csv", threads=1)
    clean(raw, ["cat", "dog"], OPTIONS, tmp_path / "b.csv", threads=4)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_near_copies_off_leaves_exact_copies(corpus, tmp_path):
    raw, _ = corpus
    rows = clean(raw, ["cat", "dog"], {**OPTIONS, "near_copy": 0}, tmp_path / "m.csv")
    got = {r["file"]: r["reason"] for r in rows}
    assert got["cat/big_resized.jpg"] == "" and got["cat/photo_copy.webp"] == "duplicate"
    assert got["cat/shared.png"] == got["dog/shared.png"] == "ambiguous_label"  # sha256 still counts
    assert got["cat/shared_reencoded.jpg"] == got["dog/shared_near.jpg"] == ""


def test_thresholds_come_from_options(corpus, tmp_path):
    raw, _ = corpus
    rows = clean(raw, ["cat", "dog"], {**OPTIONS, "min_side": 60, "max_pixels": 5000}, tmp_path / "m.csv")
    got = {r["file"]: r["reason"] for r in rows}
    assert got["cat/rotated.jpg"] == "too_small"  # 48 px side
    assert got["cat/big.png"] == "too_large"  # 96*96 > 5000
    assert got["cat/gray.png"] == ""


def test_class_with_nothing_kept_fails_naming_it(tmp_path):
    raw = Results(tmp_path).raw_dir
    (raw / "good").mkdir(parents=True)
    (raw / "bad").mkdir()
    save(blocks(1), raw / "good" / "x.png")
    (raw / "bad" / "x.jpg").write_text("<html></html>")
    save(blocks(2, size=(8, 8)), raw / "bad" / "y.png")
    with pytest.raises(CleanError, match=r"class 'bad': 2 raw files, none kept.*not_an_image.*too_small"):
        clean(raw, ["good", "bad"], OPTIONS, tmp_path / "m.csv")
    with pytest.raises(CleanError, match="class 'missing'.*does not exist"):
        clean(raw, ["good", "missing"], OPTIONS, tmp_path / "m.csv")
