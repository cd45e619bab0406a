"""Procedurally drawn shape images for the offline demo and tests.

One class = one shape kind. Each image: a two-colour gradient background, `clutter`
distractors (polylines and irregular jagged blobs, never one of SHAPES), one object
of the class's shape with random colour, size, position and rotation drawn on top,
then Gaussian pixel noise (sigma = noise * 60 grey levels). The object's bounding
box (tight around its pixels, x1/y1 exclusive, i.e. pixel edges) goes to boxes.csv.

Deterministic: the image depends only on (seed, class, index, size, noise, clutter),
and PNG encoding adds no timestamps, so the same inputs give identical bytes.
The class name (not the shape) seeds the generator so two classes drawing the same
shape never produce identical images (clean would quarantine them as ambiguous).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from convscope import layout
from convscope.shapes import SHAPES

log = logging.getLogger(__name__)

BOX_COLUMNS = ("file", "x0", "y0", "x1", "y1", "width", "height")
_SUPERSAMPLE = 4  # shapes are rasterised 4x larger and box-filtered down: smooth edges
_NOISE_SCALE = 60.0  # noise=1 -> sigma of 60 grey levels


@dataclass(frozen=True)
class Drawing:
    image: Image.Image  # RGB, size x size
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive
    alpha: np.ndarray  # float32 size x size, the object's coverage of each pixel (0..1)
    colour: tuple[int, int, int]


def _rng(seed: int, cls: str, index: int, stream: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{cls}/{index}/{stream}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _outline(shape: str, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Unit-radius outline(s) of `shape` centred at 0: (filled polygons, holes)."""

    def regular(n: int, phase: float = math.pi / 2, radii=(1.0,)) -> np.ndarray:
        k = np.arange(n * len(radii))
        t = phase + 2 * math.pi * k / (n * len(radii))
        r = np.array(radii * n)
        return np.stack([r * np.cos(t), -r * np.sin(t)], axis=1)

    if shape == "circle":
        return [regular(96)], []
    if shape == "ellipse":
        t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        b = rng.uniform(0.45, 0.7)  # clearly not a circle
        return [np.stack([np.cos(t), b * np.sin(t)], axis=1)], []
    if shape == "ring":
        return [regular(96)], [regular(96) * rng.uniform(0.5, 0.65)]
    if shape == "square":
        return [regular(4, math.pi / 4)], []
    if shape == "triangle":
        return [regular(3)], []
    if shape == "hexagon":
        return [regular(6)], []
    if shape == "star":
        return [regular(5, radii=(1.0, 0.42))], []
    if shape == "cross":
        w = 0.32
        pts = [
            (w, 1),
            (w, w),
            (1, w),
            (1, -w),
            (w, -w),
            (w, -1),
            (-w, -1),
            (-w, -w),
            (-1, -w),
            (-1, w),
            (-w, w),
            (-w, 1),
        ]
        return [np.array(pts, dtype=float)], []
    raise ValueError(f"unknown shape {shape!r}; known shapes: {list(SHAPES)}")


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float64)


def _distance_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-9), 0, 1)
    return float(np.linalg.norm(p - (a + t * ab)))


def _draw_clutter(img: Image.Image, rng: np.random.Generator, count: int) -> None:
    """Distractors that are none of SHAPES: polylines and jagged irregular blobs."""
    size = img.width
    draw = ImageDraw.Draw(img)
    for _ in range(count):
        colour = tuple(int(c) for c in _colour(rng))
        if rng.random() < 0.5:
            n = int(rng.integers(2, 5))
            pts = [tuple(p) for p in rng.uniform(0, size, size=(n, 2))]
            draw.line(pts, fill=colour, width=int(rng.integers(1, max(2, size // 40) + 1)))
        else:
            n = int(rng.integers(7, 12))
            r = size * rng.uniform(0.03, 0.1)
            centre = rng.uniform(0, size, size=2)
            t = np.sort(rng.uniform(0, 2 * math.pi, size=n))
            radii = r * rng.uniform(0.3, 1.0, size=n)  # strongly irregular: no regular polygon
            pts = centre + np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1)
            draw.polygon([tuple(p) for p in pts], fill=colour)


@dataclass(frozen=True)
class Scene:
    """How images are drawn: the crawl.synthetic settings that shape a picture.

    object_size: the range of the object's radius as a fraction of the image side (larger
    is easier to learn); rotation: the range of its rotation in degrees (0 = upright: a
    triangle points up); off_centre: the fraction of images whose object is drawn clear of
    the image centre (its box leaves the middle free; an object too large for that is drawn
    smaller, just fitting), so a map that always points at the centre no longer wins the
    pointing game (0 draws as before: anywhere the object fits); off_centre_gap: the clearance
    between such an object and the middle, as a fraction of the side.
    """

    size: int
    noise: float
    clutter: int
    object_size: tuple[float, float]
    rotation: tuple[float, float]
    off_centre: float
    off_centre_gap: float

    @classmethod
    def of(cls, settings: dict | None = None, **overrides) -> Scene:
        """The scene of crawl.synthetic `settings` and `overrides`; the schema's defaults fill the rest."""
        from convscope import config

        s = {**config.defaults("crawl")["synthetic"], **(settings or {}), **overrides}
        return cls(
            size=int(s["size"]),
            noise=float(s["noise"]),
            clutter=int(s["clutter"]),
            object_size=tuple(float(v) for v in s["object_size"]),
            rotation=tuple(float(v) for v in s["rotation"]),
            off_centre=float(s["off_centre"]),
            off_centre_gap=float(s["off_centre_gap"]),
        )


def draw(cls: str, shape: str, seed: int, index: int, scene: Scene, *, with_object: bool = True) -> Drawing:
    """Draw image `index` of class `cls` as `scene` says. with_object=False leaves the object
    out and changes nothing else (the same background, clutter and noise), which is how the
    tests check the box against the pixels the object changes."""
    rng = _rng(seed, cls, index, "scene")
    img, c1, c2 = _background(rng, scene)
    # Object colour far from every background colour, so the object stands out.
    colour = _colour(rng)
    while _distance_to_segment(colour, c1, c2) < 80:
        colour = _colour(rng)
    polys, holes, centre = _placed_outline(shape, rng, _rng(seed, cls, index, "place"), scene)
    coverage = _coverage(polys, holes, centre, scene.size)
    alpha = np.asarray(coverage, dtype=np.float32) / 255.0
    pixels = np.asarray(img, dtype=np.float64)
    if with_object:
        a = alpha[..., None]
        pixels = pixels * (1 - a) + colour * a
    sigma = scene.noise * _NOISE_SCALE
    if sigma > 0:
        # A separate stream, so leaving the object out does not change the noise.
        pixels = pixels + _rng(seed, cls, index, "noise").normal(0, sigma, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8), "RGB")
    return Drawing(image, coverage.getbbox(), alpha, tuple(int(c) for c in colour))


def _background(rng: np.random.Generator, scene: Scene) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """A gradient between two colours along a random direction, with the scene's clutter."""
    size = scene.size
    c1, c2 = _colour(rng), _colour(rng)
    phi = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / max(size - 1, 1)
    t = xx * math.cos(phi) + yy * math.sin(phi)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
    background = c1 * (1 - t[..., None]) + c2 * t[..., None]
    img = Image.fromarray(background.round().astype(np.uint8), "RGB")
    _draw_clutter(img, rng, scene.clutter)
    return img, c1, c2


def _placed_outline(shape: str, rng, place, scene: Scene) -> tuple[list, list, np.ndarray]:
    """The object's polygons and holes (scaled and turned) and its centre in the image.
    `place` is its own stream, so off_centre=0 draws exactly as before it existed."""
    size, margin = scene.size, 2
    polys, holes = _outline(shape, rng)
    theta = rng.uniform(*(math.radians(d) for d in scene.rotation))
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    radius = size * rng.uniform(*scene.object_size)
    polys = [p @ rot.T * radius for p in polys]
    holes = [h @ rot.T * radius for h in holes]
    lo = np.min([p.min(axis=0) for p in polys], axis=0)
    hi = np.max([p.max(axis=0) for p in polys], axis=0)
    centre = np.array(
        [rng.uniform(margin - lo[i], size - margin - hi[i]) for i in range(2)]
    )  # whole object inside the image
    if scene.off_centre > 0 and place.random() < scene.off_centre:
        # an object wider than the space beside the middle is drawn smaller, just fitting
        gap = _gap(size, scene.off_centre_gap)
        fit = min(1.0, (size / 2 - gap - margin) / float(np.max(hi - lo)))
        polys, holes, lo, hi = [p * fit for p in polys], [h * fit for h in holes], lo * fit, hi * fit
        centre = _beside_the_centre(place, lo, hi, size, margin, gap)
    return polys, holes, centre


def _coverage(polys: list, holes: list, centre: np.ndarray, size: int) -> Image.Image:
    """The object's coverage of each pixel (L, 0..255), rasterised large and box-filtered down."""
    big = Image.new("L", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), 0)
    pen = ImageDraw.Draw(big)
    for poly in polys:
        pen.polygon([tuple(q) for q in (poly + centre) * _SUPERSAMPLE], fill=255)
    for hole in holes:
        pen.polygon([tuple(q) for q in (hole + centre) * _SUPERSAMPLE], fill=0)
    return big.resize((size, size), Image.Resampling.BOX)


def _gap(size: int, fraction: float) -> float:
    """Clearance between an off-centre object and the middle: at least 2 px, so that it
    survives resizing to a quarter."""
    return max(2.0, size * fraction)


def _beside_the_centre(rng, lo, hi, size: int, margin: int, gap: float) -> np.ndarray:
    """An object centre that keeps the object (extent lo..hi around it) wholly on one side of
    the image's middle row or column, `gap` pixels clear of it, at a random place along that side."""
    mid = size / 2
    sides = []  # (axis, low, high) ranges of the centre along one axis
    for axis in range(2):
        sides.append((axis, margin - lo[axis], mid - gap - hi[axis]))  # left of / above the middle
        sides.append((axis, mid + gap - lo[axis], size - margin - hi[axis]))  # right of / below it
    sides = [s for s in sides if s[1] <= s[2] + 1e-9]
    axis, low, high = sides[int(rng.integers(len(sides)))]
    other = 1 - axis
    centre = np.empty(2)
    centre[axis] = rng.uniform(low, max(low, high))
    centre[other] = rng.uniform(margin - lo[other], size - margin - hi[other])
    return centre


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def synthesize(cls: str, options: dict, ledger) -> str:
    """Draw images for `cls` until the ledger holds options["max_images"] ok images.

    Image i is stored as {i:06d}.png (its key in the ledger names shape, seed and
    index), so adding images later draws only the next indices. Returns why it stopped.
    """
    from convscope.data.ledger import OK

    shape, seed, target = options["shape"], options["seed"], options["max_images"]
    settings = options["synthetic"]
    scene = Scene.of(settings)
    detail = _detail(settings, scene)
    fraction, others = settings.get("mislabel_fraction", 0), options.get("other_shapes") or []
    prefix = f"synthetic:{shape}/seed={seed}/index="
    _warn_if_settings_changed(cls, ledger, prefix, detail)
    boxes_path = ledger.folder / layout.BOXES
    index = 0
    while ledger.ok_count < target:
        index += 1
        if index > 10 * target + 100:  # only reachable if drawings kept colliding
            raise RuntimeError(f"class {cls!r}: synthetic drawing produced too many duplicate images")
        key = f"{prefix}{index}"
        if ledger.is_final(key):
            continue
        drawn = planted_shape(cls, seed, index, fraction, others) or shape
        d = draw(cls, drawn, seed, index, scene)
        note = detail if drawn == shape else f"{detail}{PLANTED}{drawn}"
        stored = ledger.store(
            "synthetic", key, png_bytes(d.image), "png", detail=note, name=layout.synthetic_image_name(index)
        )
        if stored.status == OK:
            _append_box(boxes_path, stored.file, d.box, d.image.size)
        if index % 50 == 0:
            log.info("class %s: %d/%d synthetic %s images", cls, ledger.ok_count, target, shape)
    return "target"


def _detail(settings: dict, scene: Scene) -> str:
    """The ledger's note of how an image was drawn. Knobs at their defaults are left out,
    so ledgers written before a knob existed read the same."""
    detail = f"size={settings['size']} noise={settings['noise']} clutter={settings['clutter']}"
    plain = Scene.of()
    if scene.object_size != plain.object_size:
        detail += " object_size={}-{}".format(*settings["object_size"])
    if scene.rotation != plain.rotation:
        detail += " rotation={}-{}".format(*settings["rotation"])
    if scene.off_centre:
        detail += f" off_centre={settings['off_centre']}"
    if scene.off_centre and scene.off_centre_gap != plain.off_centre_gap:
        detail += f" off_centre_gap={settings['off_centre_gap']}"
    return detail


# The ledger detail of a planted image ends with this and the shape it shows.
PLANTED = "; planted wrong class, drawn as "


def planted_shape(cls: str, seed: int, index: int, fraction: float, others: list[str]) -> str | None:
    """The other class's shape image `index` shows when it is a planted label error, else None.

    crawl.synthetic.mislabel_fraction of the images (decided per image by a seeded hash, so
    adding images plants in the new ones at the same rate) show another class's shape.
    """
    if fraction <= 0 or not others:
        return None
    digest = hashlib.sha256(f"plant:{seed}:{cls}:{index}".encode()).digest()
    if int.from_bytes(digest[:8], "big") / 2**64 >= fraction:
        return None
    return sorted(others)[digest[8] % len(others)]


def _warn_if_settings_changed(cls: str, ledger, prefix: str, detail: str) -> None:
    old = [r for r in ledger.rows() if r["source"] == "synthetic" and r["status"] == "ok"]
    differ = [r for r in old if not r["url_or_path"].startswith(prefix) or r["detail"].split(";")[0] != detail]
    if differ:
        log.warning(
            "class %s: %d existing images in %s were drawn with other settings (e.g. %s, %s); "
            "they are kept and count toward max_images, new ones use %s%s. Delete %s to redraw all.",
            cls,
            len(differ),
            ledger.folder,
            differ[0]["url_or_path"],
            differ[0]["detail"],
            prefix,
            detail,
            ledger.folder,
        )


def _append_box(path: Path, file: str, box: tuple, image_size: tuple[int, int]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(BOX_COLUMNS)
        writer.writerow([file, *box, *image_size])
