"""Parameter-randomisation sanity check of explanation maps (Adebayo et al., NeurIPS 2018).

A map that explains the model must change when the model's weights are destroyed.
The check recomputes every method's maps on the same images after randomising
weights, in two ways:

- cascading: the head, then the head and the top block of the backbone, then the
  top two blocks, ... (each stage keeps the randomisation of the ones above);
- independent: one block at a time, the rest trained.

and measures the similarity to the trained model's maps: Spearman rank correlation
(scipy.stats.spearmanr) and SSIM (a Gaussian-window SSIM in NumPy/SciPy: no image
library needed), both per image on the maps resized to the image and averaged. A
method passes when its mean rank correlation at the last cascading stage is below
the threshold (Adebayo et al.: gradients and Grad-CAM fall to about 0-0.3 once the
top layers are randomised; Guided Backprop stays near 1; default 0.5). Measured: on the
small CNN trained on shapes (tests/test_trust.py) Grad-CAM 0.00, plain gradients 0.37, an
image-gradient "method" 1.00; on the demo-shaped AlexNet at 64 px (bench/explain_cost.py)
the CAMs and occlusion -0.49 to 0.15, saliency 0.71, Integrated Gradients 0.58, EigenCAM 0.90.

Randomising = shuffling each weight tensor's values with a seeded permutation: the
weights keep their scale and sign distribution (BatchNorm variances stay positive)
and lose their arrangement. The weights are changed in place on the loaded model
(every cut and compiled step reads the same variables) and restored afterwards.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from convscope.analysis.explain.gradcam import upsample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str  # "head", or the block randomised last (cascading: with every stage above it)
    mode: str  # "cascading" | "independent"
    depth: int  # number of blocks (head included) randomised
    layers: tuple  # the Keras layers whose weights are randomised


@dataclass
class SanityResult:
    threshold: float
    images: int
    rows: list = field(default_factory=list)  # {method, mode, stage, depth, spearman, ssim}
    verdicts: dict = field(default_factory=dict)  # method -> {passed, spearman, ssim, stage, reason}


def stages(head_layers, blocks, n_blocks: int | None, independent: bool = True) -> list[Stage]:
    """The randomisation stages: blocks bottom to top (lists of layers), the top n_blocks used."""
    top = list(reversed(blocks))[: (len(blocks) if n_blocks is None else int(n_blocks))]
    names = [_block_name(b) for b in top]
    out = [Stage("head", "cascading", 1, tuple(head_layers))]
    layers = list(head_layers)
    for k, (name, block) in enumerate(zip(names, top), start=2):
        layers += list(block)
        out.append(Stage(name, "cascading", k, tuple(layers)))
    if independent:
        out += [Stage(name, "independent", k, tuple(b)) for k, (name, b) in enumerate(zip(names, top), start=2)]
    return out


def head_layers(model) -> list:
    """The classifier's head: the layer named "head" (the contract), else its last layer with weights."""
    try:
        return [model.get_layer("head")]
    except ValueError:
        with_weights = [layer for layer in model.layers if layer.weights]
        return with_weights[-1:]


def base_blocks(model, boundaries) -> list[list]:
    """The backbone's layers with weights split into blocks, bottom to top: block i ends at
    boundaries[i] (layers after the last boundary join the last block). The backbone is the
    nested "base" of the classifier contract, else the model itself."""
    try:
        base = model.get_layer("base")
    except ValueError:
        base = model
    names = [layer.name for layer in base.layers]
    missing = [b for b in boundaries if b not in names]
    if missing:
        raise ValueError(
            f"randomisation check: block boundaries {missing} are not layers of {base.name!r}; "
            f"check the backbone's blocks in convscope/backbones.py"
        )
    ends = [names.index(b) + 1 for b in boundaries]
    ends[-1] = len(names)
    starts = [0, *ends[:-1]]
    return [[layer for layer in base.layers[s:e] if layer.weights] for s, e in zip(starts, ends)]


def _block_name(block) -> str:
    return block[-1].name if block else "?"


@contextlib.contextmanager
def randomised(layers, seed: int):
    """Every weight of `layers` shuffled in place (seeded), restored on exit."""
    rng = np.random.default_rng(seed)
    variables = [v for layer in layers for v in layer.weights]
    saved = [np.array(v.numpy()) for v in variables]
    try:
        for v, value in zip(variables, saved):
            v.assign(rng.permutation(value.reshape(-1)).reshape(value.shape))
        yield
    finally:
        for v, value in zip(variables, saved):
            v.assign(value)


def spearman(a, b) -> np.ndarray:
    """Per-image Spearman rank correlation of two map stacks (N x H x W); a flat map counts as 0."""
    from scipy.stats import spearmanr

    out = np.zeros(len(a))
    for i, (x, y) in enumerate(zip(a, b)):
        x, y = np.ravel(x), np.ravel(y)
        if np.ptp(x) > 0 and np.ptp(y) > 0:
            out[i] = spearmanr(x, y).statistic
    return out


def ssim(a, b, sigma: float = 1.5) -> np.ndarray:
    """Per-image mean SSIM (Wang et al. 2004, Gaussian window) of maps scaled to [0, 1]."""
    from scipy.ndimage import gaussian_filter

    c1, c2 = 0.01**2, 0.03**2
    out = np.zeros(len(a))
    for i, (x, y) in enumerate(zip(a, b)):
        x, y = _unit(x), _unit(y)
        f = lambda t: gaussian_filter(t, sigma, mode="reflect")
        mx, my = f(x), f(y)
        vx, vy, cov = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
        out[i] = float(s.mean())
    return out


def _unit(m) -> np.ndarray:
    m = np.asarray(m, np.float64)
    span = np.ptp(m)
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)


def randomisation_check(
    stage_list: list[Stage], compute: Callable[[], dict], trained: dict, size, *, threshold: float, seed: int = 0
) -> SanityResult:
    """Recompute the maps with `compute()` (method -> N x h x w, on the images `trained` holds)
    under each stage's randomisation; compare each to the trained maps.

    compute is called once per stage on the same loaded model; it should batch its images.
    """
    reference = {name: upsample(m, size) for name, m in trained.items()}
    result = SanityResult(threshold=float(threshold), images=len(next(iter(trained.values()))))
    for k, stage in enumerate(stage_list):
        log.info("sanity: randomising %s (%s, %d layers)", stage.name, stage.mode, len(stage.layers))
        with randomised(stage.layers, seed + k):
            maps = compute()
        for name, ref in reference.items():
            m = upsample(maps[name], size)
            result.rows.append(
                {
                    "method": name,
                    "mode": stage.mode,
                    "stage": stage.name,
                    "depth": stage.depth,
                    "spearman": float(spearman(ref, m).mean()),
                    "ssim": float(ssim(ref, m).mean()),
                }
            )
    result.verdicts = _verdicts(result.rows, reference, threshold)
    return result


def _depth(depth: int) -> str:
    return "the head" if depth <= 1 else f"the head and the top {depth - 1} block(s)"


def _verdicts(rows, methods, threshold: float) -> dict:
    out = {}
    for name in methods:
        cascade = [r for r in rows if r["method"] == name and r["mode"] == "cascading"]
        last = max(cascade, key=lambda r: r["depth"])
        passed = last["spearman"] < threshold
        reason = (
            f"rank correlation with the trained maps fell to {last['spearman']:.2f} (< {threshold:g}) "
            f"once {_depth(last['depth'])} were randomised"
            if passed
            else f"the maps barely change when the weights are randomised (rank correlation "
            f"{last['spearman']:.2f} >= {threshold:g} with {_depth(last['depth'])} randomised): "
            f"they show the image (edges, colours), not what the model uses"
        )
        out[name] = {
            "passed": bool(passed),
            "spearman": last["spearman"],
            "ssim": last["ssim"],
            "stage": last["stage"],
            "reason": reason,
        }
    return out
