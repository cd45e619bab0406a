"""imageio: decoding awkward files to RGB, rejections, and the square geometry."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw

from convscope.data import imageio
from convscope.data.imageio import ImageRejected, load_rgb, map_box, resize_square
from tests.images import blocks


def rejected(path, **kw):
    with pytest.raises(ImageRejected) as info:
        load_rgb(path, **kw)
    return info.value


def test_modes_are_flattened_to_rgb(tmp_path):
    base = blocks(1)
    gray = np.asarray(Image.fromarray(base).convert("L"))
    cases = {}

    Image.fromarray(base).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    cases["cmyk.jpg"] = (base, 8)

    Image.fromarray(gray).save(tmp_path / "l.png")
    cases["l.png"] = (np.dstack([gray] * 3), 0)

    alpha = np.full(gray.shape, 255, np.uint8)
    alpha[:, :32] = 0
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / "la.png")
    want = np.dstack([gray] * 3).copy()
    want[:, :32] = 255  # transparent -> white
    cases["la.png"] = (want, 0)

    rgba = np.dstack([base, np.full(gray.shape, 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    cases["rgba.png"] = ((base.astype(int) * 128 + 255 * 127 + 127) // 255, 1)

    # 16-bit: 257*v must come back as v (scaled, not clipped to 255)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode == "I;16"
    cases["gray16.png"] = (np.dstack([gray] * 3), 0)

    Image.fromarray(gray.astype(np.int32) * 257).save(tmp_path / "int32.tif")
    assert Image.open(tmp_path / "int32.tif").mode == "I"
    cases["int32.tif"] = (np.dstack([gray] * 3), 0)

    Image.fromarray(gray.astype(np.float32) / 255).save(tmp_path / "float.tif")
    cases["float.tif"] = (np.dstack([gray] * 3), 1)

    bits = (gray > 127).astype(np.uint8) * 255
    Image.fromarray(bits).convert("1").save(tmp_path / "bits.png")
    cases["bits.png"] = (np.dstack([bits] * 3), 0)

    Image.fromarray(base).save(tmp_path / "lossless.webp", lossless=True)
    cases["lossless.webp"] = (base, 0)

    for name, (want, tol) in cases.items():
        img = load_rgb(tmp_path / name)
        assert img.mode == "RGB" and img.size == (64, 64), name
        diff = np.abs(np.asarray(img).astype(int) - want.astype(int))
        assert diff.max() <= tol if tol < 8 else diff.mean() <= tol, (name, diff.max(), diff.mean())
    assert load_rgb(tmp_path / "cmyk.jpg").info["source_mode"] == "CMYK"
    assert load_rgb(tmp_path / "gray16.png").info["source_mode"] == "I;16"


def test_palette_with_transparency_composites_on_white(tmp_path):
    idx = np.zeros((40, 40), np.uint8)
    idx[:, 20:] = 1
    img = Image.fromarray(idx, "P")
    img.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    img.save(tmp_path / "p.png", transparency=0)
    img.save(tmp_path / "p.gif", transparency=0)
    for name in ("p.png", "p.gif"):
        out = np.asarray(load_rgb(tmp_path / name))
        assert (out[:, :20] == 255).all(), name  # the transparent index is white, not black
        assert (out[:, 20:] == [200, 30, 40]).all(), name


def test_exif_orientation_is_applied(tmp_path):
    raw = blocks(2, size=(64, 48))
    exif = Image.Exif()
    exif[0x0112] = 6  # display = raw rotated 90 degrees clockwise
    Image.fromarray(raw).save(tmp_path / "rot.jpg", quality=95, subsampling=0, exif=exif)
    img = load_rgb(tmp_path / "rot.jpg")
    assert img.size == (48, 64) and img.info["source_size"] == (48, 64)
    got = np.asarray(img).astype(int)
    assert np.abs(got - np.rot90(raw, k=-1)).mean() < 6
    assert np.abs(got - np.rot90(raw, k=1)).mean() > 30  # and not the other way round


def test_animated_gif_gives_first_frame(tmp_path):
    first, second = blocks(3), blocks(4)
    frames = [Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE) for a in (first, second)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    got = np.asarray(load_rgb(tmp_path / "anim.gif")).astype(int)
    assert np.abs(got - first).max() <= 2


def test_rejections_have_machine_friendly_reasons(tmp_path):
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "JPEG", quality=95)
    jpeg = buf.getvalue()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "page.jpg").write_text("<!DOCTYPE html><html><body>Not found</body></html>")
    (tmp_path / "shape.svg").write_text('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>')
    (tmp_path / "notes.txt").write_text("just some text\n")
    (tmp_path / "junk.bin").write_bytes(bytes(range(256)) * 4)

    assert rejected(tmp_path / "cut.jpg", draft_size=(16, 16)).reason == imageio.TRUNCATED
    assert rejected(tmp_path / "cut.jpg").reason == imageio.TRUNCATED
    assert rejected(tmp_path / "cut.png").reason == imageio.TRUNCATED
    assert rejected(tmp_path / "zero.jpg").reason == imageio.EMPTY_FILE
    for name, looks_like in [
        ("page.jpg", "HTML"),
        ("shape.svg", "SVG"),
        ("notes.txt", "text"),
        ("junk.bin", "binary"),
    ]:
        err = rejected(tmp_path / name)
        assert err.reason == imageio.NOT_AN_IMAGE and looks_like in err.detail, (name, err)


def _patch_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    data = bytearray(jpeg)
    sof = data.index(b"\xff\xc0")  # baseline SOF0: len(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def test_decompression_bomb_guard_uses_header_before_decoding(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(blocks(5)).save(buf, "JPEG")
    # Beyond PIL's own hard limit (it would raise DecompressionBombError) ...
    (tmp_path / "huge.jpg").write_bytes(_patch_jpeg_size(buf.getvalue(), 40000, 40000))
    # ... and between PIL's warning and error limits (our guard must answer first).
    (tmp_path / "big.jpg").write_bytes(_patch_jpeg_size(buf.getvalue(), 10000, 10000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not escape
        for name in ("huge.jpg", "big.jpg"):
            assert rejected(tmp_path / name).reason == imageio.TOO_LARGE, name
        err = rejected(tmp_path / "big.jpg")
        assert err.header["width"] == 10000 and "max_pixels" in err.detail
        Image.fromarray(blocks(5)).save(tmp_path / "small.png")
        assert rejected(tmp_path / "small.png", max_pixels=64 * 64 - 1).reason == imageio.TOO_LARGE
        assert load_rgb(tmp_path / "small.png", max_pixels=64 * 64).size == (64, 64)


def _scene(size=(160, 120), box=(100, 30, 140, 90)):
    img = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(img).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=(0, 0, 0))
    return img, box


def _dark_bbox(img):
    ys, xs = np.nonzero(np.asarray(img.convert("L")) < 128)
    return (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


@pytest.mark.parametrize("policy", imageio.POLICIES)
def test_map_box_follows_the_pixels(policy):
    img, box = _scene()
    out = resize_square(img, 64, policy, fill=(255, 255, 255))
    assert out.size == (64, 64) and out.mode == "RGB"
    mapped = map_box(box, img.size, 64, policy)
    assert np.allclose(mapped, _dark_bbox(out), atol=1.0), (mapped, _dark_bbox(out))


def test_map_box_geometry():
    # 160x120 centre crop keeps x 20..140; pad scales by 64/160 and centres vertically.
    assert map_box((0, 0, 10, 10), (160, 120), 64, "center_crop") is None  # cropped away
    assert map_box((0, 0, 160, 120), (160, 120), 64, "center_crop") == (0, 0, 64, 64)
    assert map_box((0, 0, 160, 120), (160, 120), 64, "pad") == (0, 8, 64, 56)
    assert map_box((40, 30, 80, 60), (160, 120), 64, "squash") == (16, 16, 32, 32)
    with pytest.raises(ValueError, match="resize policy"):
        map_box((0, 0, 1, 1), (10, 10), 8, "stretch")


@pytest.mark.parametrize("policy", imageio.POLICIES)
def test_draft_decoding_lands_where_full_decoding_does(tmp_path, policy):
    img, box = _scene(size=(800, 600), box=(500, 150, 700, 450))
    img.save(tmp_path / "cam.jpg", quality=92)
    full = load_rgb(tmp_path / "cam.jpg")
    small = load_rgb(tmp_path / "cam.jpg", draft_size=(64, 64))
    assert small.size == (100, 75) and small.info["source_size"] == (800, 600)  # decoded at 1/8
    white = (255, 255, 255)
    a = resize_square(full, 64, policy, fill=white)
    b = resize_square(small, 64, policy, fill=white)
    assert np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int)).mean() < 4
    assert np.allclose(map_box(box, small.info["source_size"], 64, policy), _dark_bbox(b), atol=1.0)
