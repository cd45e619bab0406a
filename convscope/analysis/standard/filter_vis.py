"""Feature visualization: images that maximise one channel of a layer.

Regularised gradient ascent (Olah et al., "Feature Visualization", Distill 2017):
at every step the image goes through a fresh random jitter, scaling and
rotation (one bilinear resampling, so the channel cannot rely on exact pixel
positions), and a total-variation penalty discourages high-frequency noise.
Optionally the image is parameterised in a decorrelated space: a Fourier
spectrum scaled by 1/frequency (low frequencies move first) and colours
decorrelated with ImageNet's colour correlation. All requested channels are
optimised together as one batch (image k maximises channel k).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from convscope.analysis.gradients import value_and_grad

log = logging.getLogger(__name__)

# Square root of ImageNet's colour correlation matrix (from the Lucid library):
# mixing colour channels with it decorrelates the optimisation's colour space.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOR = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))


@dataclass(frozen=True)
class Settings:
    """Config analysis.filter_vis (the schema's defaults: from_options) and the seed."""

    steps: int
    learning_rate: float
    jitter: int  # pixels, random shift each step
    scale: float  # random zoom in [1 - scale, 1 + scale]
    rotation: float  # degrees, random in [-rotation, rotation]
    tv_weight: float  # total variation penalty, relative to the layer's activation scale
    fourier: bool  # decorrelated Fourier + colour parameterisation
    seed: int
    size: int | None  # side of the optimised images in px (None: the network's input size)

    @classmethod
    def from_options(cls, options: dict | None) -> Settings:
        """analysis.filter_vis keys (and "seed", default 0) over the schema's defaults; other keys ignored."""
        from convscope import config as cfg

        merged = {**cfg.defaults("analysis")["filter_vis"], "seed": 0, **(options or {})}
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in merged.items() if k in known})

    def image_size(self, input_size) -> tuple[int, int]:
        """(H, W) of the optimised images for a network whose input is `input_size` (H, W).

        The one place that decides it: `size` square, never larger than the input
        (a 64 px network keeps 64); the input size itself when `size` is None.
        """
        height, width = (int(d) for d in input_size)
        if self.size is None:
            return height, width
        side = min(int(self.size), height, width)
        return side, side


def sampling(height: int, width: int, *, shift=(0.0, 0.0), zoom: float = 1.0, angle: float = 0.0):
    """Bilinear resampling of an image by a shift (pixels), zoom and rotation (degrees) about its centre.

    Returns (index 4 x H*W int32, weight 4 x H*W float32): output pixel p is
    sum_j weight[j, p] * image_flat[index[j, p]]. Sources outside the image take
    the nearest edge pixel.
    """
    rows, cols = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    cy, cx = height / 2.0, width / 2.0
    theta = np.deg2rad(angle)
    dy, dx = (rows - cy) / zoom, (cols - cx) / zoom
    src_y = cy + np.cos(theta) * dy - np.sin(theta) * dx + shift[0] - 0.5
    src_x = cx + np.sin(theta) * dy + np.cos(theta) * dx + shift[1] - 0.5
    y0, x0 = np.floor(src_y), np.floor(src_x)
    fy, fx = src_y - y0, src_x - x0
    index, weight = [], []
    for oy, wy in ((0, 1 - fy), (1, fy)):
        for ox, wx in ((0, 1 - fx), (1, fx)):
            yy = np.clip(y0 + oy, 0, height - 1).astype(np.int64)
            xx = np.clip(x0 + ox, 0, width - 1).astype(np.int64)
            index.append((yy * width + xx).ravel())
            weight.append((wy * wx).ravel())
    return np.stack(index).astype(np.int32), np.stack(weight).astype(np.float32)


def _spectrum_scale(height: int, width: int) -> np.ndarray:
    """1/frequency weights for an H x W spectrum, normalised so white noise keeps unit pixel std."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    freq = np.sqrt(fx**2 + fy**2)
    scale = 1.0 / np.maximum(freq, 1.0 / max(height, width))
    scale = scale / np.sqrt(np.mean(scale**2))
    # ifft2 divides by H*W; sqrt(H*W) brings unit-variance coefficients to unit-variance pixels.
    return (scale * np.sqrt(height * width)).astype(np.float32)


class _Image:
    """The parameterisation: parameters -> image batch K x H x W x 3 with values in (0, 255)."""

    def __init__(self, n: int, height: int, width: int, fourier: bool, rng):
        self.fourier = fourier
        self.height, self.width = height, width
        if fourier:
            self.scale = _spectrum_scale(height, width)
            self.init = rng.normal(0, 0.01, (2, n, 3, height, width)).astype(np.float32)
        else:
            self.init = rng.normal(0, 0.01, (n, height, width, 3)).astype(np.float32)

    def render(self, params):
        from keras import ops

        if self.fourier:
            scale = ops.convert_to_tensor(self.scale)
            real, _ = ops.ifft2((params[0] * scale, params[1] * scale))
            linear = ops.transpose(real, (0, 2, 3, 1))
            linear = ops.matmul(linear, ops.convert_to_tensor(_COLOR.T))
        else:
            linear = params
        return ops.sigmoid(linear) * 255.0


def _total_variation(images):
    from keras import ops

    unit = images / 255.0
    dy = ops.mean(ops.abs(unit[:, 1:] - unit[:, :-1]), axis=(1, 2, 3))
    dx = ops.mean(ops.abs(unit[:, :, 1:] - unit[:, :, :-1]), axis=(1, 2, 3))
    return dy + dx


def channel_means(to_layer, images, batch_size: int = 32) -> np.ndarray:
    """Spatial mean of each channel, N x C; to_layer is a keras.Model (batched predict)."""
    out = []
    # Chunks bound the memory of early layers' large activation maps.
    for s in range(0, len(images), 256):
        act = to_layer.predict(np.asarray(images[s : s + 256], np.float32), batch_size=batch_size, verbose=0)
        out.append(np.asarray(act, np.float64).mean(axis=(1, 2)))
    return np.concatenate(out)


@dataclass
class Result:
    images: np.ndarray  # K x H x W x 3 uint8, the visualisations
    channels: list[int]
    start: np.ndarray  # K, target channel's mean activation on the starting image
    final: np.ndarray  # K, the same on the visualisation
    pixel_std: np.ndarray  # K, std of the visualisation's pixels in [0, 1]
    input_size: tuple | None = None  # (H, W) of the network's input (the images may be smaller)


def _checked_onehot(n_channels: int, channels: list[int]) -> np.ndarray:
    bad = [c for c in channels if not 0 <= c < n_channels]
    if bad:
        raise ValueError(
            f"channels {bad} do not exist: the layer has {n_channels} channels (analysis.filter_vis.channels)"
        )
    return np.eye(n_channels, dtype=np.float32)[channels]


def _random_view(rng, settings: Settings, height: int, width: int):
    """This step's random jitter, zoom and rotation as a resampling (see sampling)."""
    return sampling(
        height,
        width,
        shift=rng.integers(-settings.jitter, settings.jitter + 1, 2).astype(float),
        zoom=float(rng.uniform(1 - settings.scale, 1 + settings.scale)),
        angle=float(rng.uniform(-settings.rotation, settings.rotation)),
    )


def _objective(image: _Image, to_layer, k: int, tv_weight: float):
    """params -> each picture's target-channel mean activation, seen through a random view, minus its TV penalty."""
    from keras import ops

    height, width = image.height, image.width

    def objective(params, index, weight, onehot, act_scale):
        img = image.render(params)
        flat = ops.reshape(img, (k, height * width, 3))
        moved = sum(ops.take(flat, index[j], axis=1) * weight[j][None, :, None] for j in range(4))
        moved = ops.reshape(moved, (k, height, width, 3))
        act = ops.mean(to_layer(moved), axis=(1, 2))
        return ops.sum(act * onehot, axis=-1) - tv_weight * act_scale * _total_variation(img)

    return objective


def at_image_size(to_layer, input_size, settings: Settings):
    """`to_layer` for the images `settings` optimises: itself at the input size, else its
    rebuild on the same layers for the smaller images (convscope.analysis.flexible_input)."""
    height, width = settings.image_size(input_size)
    if (height, width) == tuple(int(d) for d in input_size):
        return to_layer
    from convscope.analysis import flexible_input

    return flexible_input.at_side(to_layer, height)


def visualize(to_layer, channels, *, size, settings: Settings | None = None) -> Result:
    """Optimise one image per channel of the layer `to_layer` ends at.

    to_layer: keras.Model, images (K x H x W x 3, uint8-valued float) -> activations
        K x h x w x C, e.g. convscope.analysis.split_model.cut(model, layer).to_layer.
    size: (H, W) of the model input; the images are settings.image_size(size).
    settings: None for the schema's defaults.
    """
    from keras import ops

    settings = settings or Settings.from_options(None)
    channels = [int(c) for c in channels]
    to_layer = at_image_size(to_layer, size, settings)
    height, width = settings.image_size(size)
    rng = np.random.default_rng(settings.seed)
    image = _Image(len(channels), height, width, settings.fourier, rng)
    start_images = ops.convert_to_numpy(image.render(ops.convert_to_tensor(image.init)))
    start_act = ops.convert_to_numpy(to_layer(ops.convert_to_tensor(start_images)))
    onehot = _checked_onehot(start_act.shape[-1], channels)
    # TV is weighed against the layer's typical activation so one weight suits every layer.
    act_scale = np.float32(np.abs(start_act).mean() + 1e-6)
    objective = _objective(image, to_layer, len(channels), settings.tv_weight)
    params = image.init.copy()
    m, v = np.zeros_like(params), np.zeros_like(params)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for step in range(1, settings.steps + 1):
        index, weight = _random_view(rng, settings, height, width)
        value, grad = value_and_grad(
            objective, params, index, weight, onehot, act_scale, compile=True, variables=to_layer.variables
        )
        # Adam, ascending.
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad**2
        params = params + settings.learning_rate * (m / (1 - b1**step)) / (np.sqrt(v / (1 - b2**step)) + eps)
        if step == 1 or step % 32 == 0 or step == settings.steps:
            log.debug("feature visualization step %d: mean objective %.4f", step, float(np.mean(value)))
    final_images = ops.convert_to_numpy(image.render(ops.convert_to_tensor(params)))
    final_act = channel_means(to_layer, final_images)
    rows = np.arange(len(channels))
    return Result(
        images=np.clip(np.rint(final_images), 0, 255).astype(np.uint8),
        channels=channels,
        start=start_act.mean(axis=(1, 2))[rows, channels],
        final=final_act[rows, channels],
        pixel_std=(final_images / 255.0).reshape(len(channels), -1).std(axis=1),
        input_size=tuple(int(d) for d in size),
    )
