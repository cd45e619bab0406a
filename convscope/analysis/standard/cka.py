"""How far training moved each block's representation of the test images: linear CKA.

Linear CKA (Kornblith et al., ICML 2019) compares two representations of the same
n images, X (n x p) and Y (n x q), invariant to orthogonal transforms and isotropic
scaling of either:

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),  K = X X^T, L = Y Y^T.

`linear_cka` is the full form on centred features (||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)).
`MinibatchCKA` accumulates the unbiased HSIC estimator (Song et al. 2012) over
minibatches of images and divides the sums (Nguyen, Raghu and Kornblith, ICLR 2021):
memory is one minibatch's activations and three numbers per block, so conv1 at
224 px costs what it costs to run the network. It estimates the same quantity as
the full form without its small-n bias (tests/test_cka.py measures the gap).

The trained network is compared with the network the run started from (the
ImageNet, pretrained or random base, rebuilt by analysis.run.starting_base), block
by block on the test images. Blocks that stayed frozen score 1.0 by construction;
they are marked, not hidden.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convscope.analysis.index import item, section

log = logging.getLogger(__name__)


def _centred(x) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x - x.mean(axis=0, keepdims=True)


def linear_cka(x, y) -> float:
    """Full linear CKA of two representations of the same images (rows), features flattened.

    Gram form (<K, L>_F = ||Y^T X||_F^2): n x n, whatever the number of features.
    """
    x, y = _centred(x), _centred(y)
    k, m = x @ x.T, y @ y.T
    denom = np.linalg.norm(k) * np.linalg.norm(m)
    return float((k * m).sum() / denom) if denom > 0 else 0.0


# The unbiased HSIC estimator needs n > 3 images in a batch.
MIN_IMAGES = 4


def unbiased_hsic(k: np.ndarray, m: np.ndarray) -> float:
    """Unbiased HSIC estimator of two n x n Gram matrices (n > 3), diagonals ignored (Song et al. 2012)."""
    n = k.shape[0]
    if n < MIN_IMAGES:
        raise ValueError(
            f"the unbiased HSIC needs at least {MIN_IMAGES} images per minibatch, got {n} (config analysis.cka.batch_size)"
        )
    k = k.copy()
    m = m.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(m, 0)
    ones_k, ones_m = k.sum(axis=0), m.sum(axis=0)
    trace = float((k * m).sum())
    middle = float(ones_k.sum() * ones_m.sum()) / ((n - 1) * (n - 2))
    last = 2.0 * float(ones_k @ ones_m) / (n - 2)
    return (trace + middle - last) / (n * (n - 3))


class MinibatchCKA:
    """Linear CKA accumulated over minibatches: add() each batch of both representations, then value."""

    def __init__(self):
        self.xy = self.xx = self.yy = 0.0
        self.images = 0

    def add(self, x, y) -> None:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        y = np.asarray(y, np.float64).reshape(len(y), -1)
        k, m = x @ x.T, y @ y.T
        self.xy += unbiased_hsic(k, m)
        self.xx += unbiased_hsic(k, k)
        self.yy += unbiased_hsic(m, m)
        self.images += len(x)

    @property
    def value(self) -> float:
        denom = np.sqrt(max(self.xx, 0.0) * max(self.yy, 0.0))
        return float(self.xy / denom) if denom > 0 else 0.0


def minibatches(n: int, batch_size: int, seed: int = 0) -> list[np.ndarray]:
    """Indices of n images in near-equal shuffled batches of about batch_size (none smaller than 4 when n >= 4).

    Shuffled: the unbiased HSIC removes each batch's own mean, so batches of one class
    (test sets are stored class by class) would hide the differences between classes.
    """
    if n < MIN_IMAGES:
        raise ValueError(f"CKA needs at least {MIN_IMAGES} test images, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    return np.array_split(order, max(1, n // batch_size))


def block_models(base, names: list[str]):
    """One model: the base's input -> the output of each named block (one forward pass for all)."""
    import keras

    return keras.Model(base.inputs, [base.get_layer(n).output for n in names], name=f"{base.name}_blocks")


def per_block(model, reference, names: list[str], x: np.ndarray, batch_size: int) -> list[float]:
    """Minibatch CKA at each named block of the trained model's base and the reference base, on images x.

    Images go through the trained model's own layers before its base (casting,
    preprocessing; augmentation inactive), which have no weights training could move.
    """
    from keras import ops

    from convscope.analysis.split_model import cut
    from convscope.models.build import base_of

    ref = base_of(reference) if any(layer.name == "base" for layer in reference.layers) else reference
    pre = cut(model, names[0]).before[0]
    ft_blocks, ref_blocks = block_models(base_of(model), names), block_models(ref, names)
    acc = [MinibatchCKA() for _ in names]
    for idx in minibatches(len(x), batch_size):
        inp = pre(ops.convert_to_tensor(np.asarray(x[idx], np.float32)), training=False)
        ft, rf = ft_blocks(inp, training=False), ref_blocks(inp, training=False)
        for a, f, r in zip(acc, ft, rf):
            a.add(ops.convert_to_numpy(f), ops.convert_to_numpy(r))
    return [a.value for a in acc]


@dataclass(frozen=True)
class Thresholds:
    """When a block counts as kept and a whole run as unrelated to its start (config analysis.cka)."""

    kept: float
    unrelated: float


def _span(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]}–{names[-1]}"


def statement(rows: list[dict], training: str, limits: Thresholds) -> str:
    """One sentence: which blocks training changed, which kept their features, which stayed frozen."""
    trained = [r for r in rows if r["trained"]]
    frozen = [r["block"] for r in rows if not r["trained"]]
    parts = []
    if trained and all(r["cka"] <= limits.unrelated for r in trained) and not frozen:
        low = max(r["cka"] for r in trained)
        return f"{training} left nothing of the start: every block has CKA ≤ {low:.2f} with it."
    changed = [r for r in trained if r["cka"] < limits.kept]
    kept = [r for r in trained if r["cka"] >= limits.kept]
    if changed:
        values = ", ".join(f"{r['cka']:.2f}" for r in changed)
        parts.append(f"{training} changed {_span([r['block'] for r in changed])} (CKA {values})")
    if kept:
        parts.append(
            f"{_span([r['block'] for r in kept])} kept their features (≥ {min(r['cka'] for r in kept):.2f}) "
            "although they trained"
        )
    if frozen:
        parts.append(f"{_span(frozen)} stayed frozen (1.0 by construction)")
    return "; ".join(parts) + "." if parts else "no block of the base has weights to compare."


def figure(rows: list[dict], path: Path, title: str) -> Path:
    """CKA against depth; frozen blocks drawn hollow on a grey band (1.0 by construction)."""
    from convscope.analysis import plots

    fig, ax = plots.plt.subplots(figsize=(1.8 + 0.7 * len(rows), 3.2))
    xs = np.arange(len(rows))
    ax.plot(xs, [r["cka"] for r in rows], color="tab:blue", lw=1.5)
    for i, r in enumerate(rows):
        hollow = not r["trained"]
        ax.plot(i, r["cka"], "o", color="tab:blue", mfc="white" if hollow else "tab:blue", ms=7)
        if hollow:
            ax.axvspan(i - 0.5, i + 0.5, color="0.9", zorder=0)
    ax.set_xticks(xs, [r["block"] for r in rows], rotation=45 if len(rows) > 8 else 0, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("linear CKA with the start")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return plots.save_figure(fig, path)


def cka_section(rows: list[dict], out_dir: Path, start, limits: Thresholds, images: int) -> dict:
    """cka.csv, cka.json (with the findings sentence) and cka.png; start: a change.Start."""
    import pandas as pd

    from convscope import layout, records

    folder = layout.AnalysisFolder(out_dir)
    out_dir, csv, js = folder.path, folder.cka_csv, folder.cka
    pd.DataFrame(rows).to_csv(csv, index=False)
    text = statement(rows, start.training.capitalize(), limits)
    record = {
        "statement": text,
        "start": start.what,
        "test_images": images,
        "kept": limits.kept,
        "unrelated": limits.unrelated,
        "last_block_cka": rows[-1]["cka"] if rows else None,
        "blocks": rows,
    }
    records.CKA.write(js, record)
    png = figure(rows, folder.cka_png, f"Representation vs {start.what}")
    caption = (
        f"{text} Linear CKA between each block's activations on the {images} test images in this network and in "
        f"{start.what} (minibatch estimate): 1 = the same representation up to rotation and scale, near 0 = "
        "unrelated. Hollow points on grey: blocks that stayed frozen, 1.0 by construction."
    )
    return section(
        "cka",
        "Representation change per block (CKA)",
        [
            item("image", png, caption, csv, root=out_dir),
            item("json", js, "CKA per block and the sentence.", js, root=out_dir),
        ],
        kind="change",
    )
