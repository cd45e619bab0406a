"""Shared drawing helpers for every analysis: PNGs only, no display needed.

Two kinds of grid:
- `mosaic` / `save_mosaic`: tiles packed into one uint8 array with exact geometry
  (no axes, no titles). Used where the picture *is* the data (filter weights) and
  where tests must be able to cut the PNG back into its tiles.
- `image_grid`: a matplotlib figure, one titled panel per image (examples,
  activations, overlays).
`overlay` blends a heatmap onto an image (Grad-CAM, occlusion, saliency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np

from convscope import atomic

matplotlib.use("Agg")  # headless: cluster nodes and CI have no display
import matplotlib.pyplot as plt

DPI = 100


def to_unit(x, *, symmetric: bool = False) -> np.ndarray:
    """Scale an array to [0, 1] for display.

    symmetric=True maps 0 to 0.5 (signed data such as filter weights keep their sign).
    A constant array maps to 0 (or 0.5 when symmetric) instead of dividing by zero.
    """
    x = np.asarray(x, dtype=np.float64)
    if symmetric:
        m = np.abs(x).max()
        return np.full_like(x, 0.5) if m == 0 else 0.5 + 0.5 * x / m
    lo, hi = x.min(), x.max()
    return np.zeros_like(x) if hi == lo else (x - lo) / (hi - lo)


def to_uint8(x) -> np.ndarray:
    """[0, 1] floats (or already-uint8 images) as uint8."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def grid_shape(n: int, ncols: int | None = None) -> tuple[int, int]:
    """(rows, cols) for n tiles: `ncols` if given, else as square as possible."""
    if n < 1:
        raise ValueError("a grid needs at least one tile")
    cols = min(n, ncols) if ncols else math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def upscale(tile: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement: small kernels stay crisp pixels, not blur."""
    return np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)


def mosaic(tiles, *, ncols: int | None = None, pad: int = 1, background: int = 255) -> np.ndarray:
    """Pack equally sized tiles (N x h x w [x c], uint8) into one image.

    Tile i sits at row i // cols, column i % cols, its top-left corner at
    (pad + r * (h + pad), pad + c * (w + pad)); unused cells stay `background`.
    """
    tiles = np.asarray(tiles)
    if tiles.ndim == 3:
        tiles = tiles[..., None]
    n, h, w, c = tiles.shape
    rows, cols = grid_shape(n, ncols)
    out = np.full((pad + rows * (h + pad), pad + cols * (w + pad), c), background, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, col = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        out[y : y + h, x : x + w] = to_uint8(tile)
    return out[..., 0] if c == 1 else out


def save_png(array: np.ndarray, path) -> Path:
    from PIL import Image

    path = Path(path)
    with atomic.path(path) as tmp:
        Image.fromarray(to_uint8(array)).save(tmp)
    return path


def save_figure(fig, path) -> Path:
    path = Path(path)
    with atomic.path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _tile_rgb(img, cmap: str | None, size: tuple[int, int]) -> np.ndarray:
    """Any image (uint8 or float, HxW, HxWx1 or HxWx3) as a uint8 RGB tile of `size`."""
    from PIL import Image

    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        unit = img / 255.0 if img.dtype == np.uint8 else np.clip(np.asarray(img, np.float64), 0, 1)
        img = matplotlib.colormaps[cmap or "gray"](unit)[..., :3]
    img = to_uint8(img if img.dtype == np.uint8 else np.clip(img, 0, 1))
    if img.shape[:2] == size:
        return img
    # Small maps (a 4x4 activation) stay crisp cells; photos are resampled smoothly.
    method = Image.NEAREST if img.shape[0] < size[0] else Image.BILINEAR
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), method))


@dataclass(frozen=True)
class GridStyle:
    """How an image_grid is laid out: columns, colour map of 2-D images, heading, tile size."""

    ncols: int | None = None  # None: as square as possible
    cmap: str | None = None  # for HxW images; default grey
    suptitle: str | None = None
    tile_px: int = 96  # the longer side of every tile


def _tile_size(images, tile_px: int) -> tuple[int, int]:
    h0, w0 = np.asarray(images[0]).shape[:2]
    scale = tile_px / max(h0, w0)
    return max(1, round(h0 * scale)), max(1, round(w0 * scale))


def _tile_canvas(images, style: GridStyle, band: int):
    """The tiles packed on a white canvas, `band` pixels of room above each; (canvas, tile corners, tile size)."""
    rows, cols = grid_shape(len(images), style.ncols)
    th, tw = _tile_size(images, style.tile_px)
    pad = 4
    cell_h, cell_w = band + th + pad, tw + pad
    canvas = np.full((pad + rows * cell_h, pad + cols * cell_w, 3), 255, dtype=np.uint8)
    corners = []
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        y, x = pad + r * cell_h + band, pad + c * cell_w
        canvas[y : y + th, x : x + tw] = _tile_rgb(img, style.cmap, (th, tw))
        corners.append((y, x))
    return canvas, corners, (th, tw)


TILE_FONT, SUPTITLE_FONT = 7, 9  # points


def text_width_px(text: str, fontsize: float) -> float:
    """Rendered width of one line of text in pixels at DPI (the widest line of a multi-line text)."""
    from matplotlib.textpath import TextPath

    lines = str(text).split("\n") or [""]
    return max(TextPath((0, 0), line or " ", size=fontsize).get_extents().width for line in lines) * DPI / 72


def wrap_to_width(text: str, fontsize: float, max_px: float) -> str:
    """`text` with line breaks so that no line is wider than max_px: word by word, long words cut.

    A title that fits its picture can never be clipped at the figure's edge, whatever
    the number of images or columns.
    """
    out = []
    for para in str(text).split("\n"):
        line = ""
        for word in para.split(" "):
            candidate = f"{line} {word}" if line else word
            if text_width_px(candidate, fontsize) <= max_px:
                line = candidate
                continue
            if line:
                out.append(line)
            line = word
            while len(line) > 1 and text_width_px(line, fontsize) > max_px:
                cut = next(k for k in range(len(line), 0, -1) if text_width_px(line[:k], fontsize) <= max_px or k == 1)
                out.append(line[:cut])
                line = line[cut:]
        out.append(line)
    return "\n".join(out)


def image_grid(images, path, *, titles=None, title_colors=None, style: GridStyle = GridStyle()) -> Path:
    """Images in a grid, each with an optional title; writes a PNG.

    Images may be uint8 or [0, 1] floats, HxW (drawn with `style.cmap`, default grey) or
    HxWx3; each is resized to style.tile_px on its longer side. The grid is one picture with
    text on it, not one matplotlib panel per image: hundreds of tiles cost milliseconds.
    `title_colors` (one matplotlib colour per image) marks e.g. wrong predictions.
    """
    images = list(images)
    _, tw = _tile_size(images, style.tile_px)
    if titles is not None:
        titles = [wrap_to_width(t, TILE_FONT, tw - 4) for t in titles]  # margin: Agg hinting vs TextPath
    lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles is not None else 0
    band = 11 * lines + 3 if lines else 0  # pixels of title text above each tile (7 pt at 100 dpi)
    canvas, corners, (_, tw) = _tile_canvas(images, style, band)
    suptitle = wrap_to_width(style.suptitle, SUPTITLE_FONT, canvas.shape[1] - 12) if style.suptitle else None
    top = 16 * (suptitle.count("\n") + 1) + 10 if suptitle else 0  # 9 pt lines are ~15 px
    height, width = canvas.shape[0] + top, canvas.shape[1]
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, canvas.shape[0] / height))
    ax.imshow(canvas, interpolation="nearest")
    ax.axis("off")
    if titles is not None:
        for i, (y, x) in enumerate(corners):
            color = title_colors[i] if title_colors is not None else "black"
            ax.text(
                x + tw / 2,
                y - 1,
                str(titles[i]),
                ha="center",
                va="bottom",
                fontsize=TILE_FONT,
                color=color,
                linespacing=1.0,
            )
    if suptitle:
        fig.text(0.5, 1 - (top / 2) / height, suptitle, ha="center", va="center", fontsize=SUPTITLE_FONT)
    path = Path(path)
    with atomic.path(path) as tmp:
        fig.savefig(tmp, dpi=DPI)  # no bbox "tight": the pixel geometry stays as laid out
    plt.close(fig)
    return path


def colorize(heatmap: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A 2-D map as an RGB float image in [0, 1] (values scaled to [0, 1] first)."""
    return matplotlib.colormaps[cmap](to_unit(heatmap))[..., :3]


def resize_map(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to (height, width); exact when already that size."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape == tuple(size):
        return heatmap
    from PIL import Image

    return np.asarray(Image.fromarray(heatmap, mode="F").resize((size[1], size[0]), Image.BILINEAR))


def overlay(image, heatmap, *, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a heatmap (any 2-D size, any range) onto an RGB image; returns uint8 HxWx3.

    The map is resized to the image, scaled to [0, 1] and coloured with `cmap`:
    result = (1 - alpha) * image + alpha * colour.
    """
    image = np.asarray(image)
    base = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else np.asarray(image, np.float64)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=-1)
    colour = colorize(resize_map(heatmap, base.shape[:2]), cmap)
    return to_uint8((1 - alpha) * base + alpha * colour)


def class_colors(n: int) -> list:
    """n distinct colours, stable per class index (tab10, then tab20)."""
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


@dataclass(frozen=True)
class ScatterStyle:
    """A thumbnail_scatter's title and how many thumbnails (of what size, which ones) it draws."""

    title: str = ""
    max_thumbs: int = 200
    thumb_px: int = 24
    seed: int = 0  # picks the fixed random subset that gets thumbnails


def thumbnail_scatter(xy: np.ndarray, images, labels, classes, path, style: ScatterStyle = ScatterStyle()) -> Path:
    """2-D points drawn as small image thumbnails framed in their class colour.

    All points are plotted as dots; at most `style.max_thumbs` of them (a fixed random
    subset) also get a thumbnail so the plot stays readable.
    """
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    xy = np.asarray(xy, dtype=np.float64)
    labels = np.asarray(labels)
    colors = class_colors(len(classes))
    fig, ax = plt.subplots(figsize=(8, 8))
    for k, name in enumerate(classes):
        sel = labels == k
        ax.scatter(xy[sel, 0], xy[sel, 1], s=12, color=colors[k], label=f"{name} ({int(sel.sum())})")
    rng = np.random.default_rng(style.seed)
    shown = rng.permutation(len(xy))[: style.max_thumbs] if images is not None else []
    for i in shown:
        img = np.asarray(images[i])
        step = max(1, img.shape[0] // style.thumb_px)
        box = OffsetImage(img[::step, ::step], zoom=1.0)
        ab = AnnotationBbox(box, xy[i], frameon=True, pad=0.1, bboxprops={"edgecolor": colors[labels[i]], "lw": 1.5})
        ax.add_artist(ab)
    ax.legend(loc="best", fontsize=8, markerscale=2)
    ax.set_title(style.title)
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, path)


@dataclass(frozen=True)
class MatrixStyle:
    """How a labelled heatmap prints its cells and maps values to colours (None: the data's range)."""

    fmt: str = "{:.2f}"
    cmap: str = "viridis"
    vmin: float | None = None
    vmax: float | None = None


def draw_matrix(ax, matrix, row_labels, col_labels, style: MatrixStyle = MatrixStyle()):
    """A labelled heatmap on `ax` with the value printed in every cell (NaN cells blank)."""
    m = np.asarray(matrix, dtype=np.float64)
    vmin, vmax = style.vmin, style.vmax
    im = ax.imshow(np.ma.masked_invalid(m), cmap=style.cmap, vmin=vmin, vmax=vmax, aspect="auto")
    cols = [str(c) for c in col_labels]
    slanted = max(map(len, cols), default=0) > 6  # long names would overlap side by side
    ax.set_xticks(
        range(m.shape[1]), cols, rotation=45 if slanted else 0, ha="right" if slanted else "center", fontsize=8
    )
    ax.set_yticks(range(m.shape[0]), [str(r) for r in row_labels], fontsize=8)
    finite = m[np.isfinite(m)]
    lo = vmin if vmin is not None else (finite.min() if finite.size else 0)
    hi = vmax if vmax is not None else (finite.max() if finite.size else 1)
    for (i, j), v in np.ndenumerate(m):
        if np.isfinite(v):
            dark = (v - lo) < 0.5 * (hi - lo)  # viridis is dark at the low end
            ax.text(j, i, style.fmt.format(v), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    return im


def matrix_plot(
    matrix, row_labels, col_labels, path, *, axes: tuple[str, str, str] = ("", "", ""), style=MatrixStyle()
) -> Path:
    """One labelled heatmap as a PNG (see draw_matrix); axes: (title, xlabel, ylabel)."""
    title, xlabel, ylabel = axes
    m = np.asarray(matrix, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * max(3, m.shape[1]), 1.0 + 0.55 * max(3, m.shape[0])))
    im = draw_matrix(ax, m, row_labels, col_labels, style)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return save_figure(fig, path)
