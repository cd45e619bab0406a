"""t-SNE and PCA maps of the penultimate-layer embeddings of the test set."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import layout
from convscope.analysis import plots
from convscope.analysis.index import item, section
from convscope.analysis.steps import Labelled

log = logging.getLogger(__name__)


def tsne(embeddings: np.ndarray, *, perplexity: float, seed: int) -> tuple[np.ndarray, float]:
    """2-D t-SNE; perplexity is capped below the number of points (scikit-learn requires it).

    Returns the coordinates and the perplexity actually used.
    """
    from sklearn.manifold import TSNE

    n = len(embeddings)
    used = float(min(perplexity, max(1.0, (n - 1) / 3)))
    if used != perplexity:
        log.warning("t-SNE perplexity %g lowered to %g for %d test images", perplexity, used, n)
    xy = TSNE(n_components=2, perplexity=used, init="pca", random_state=seed).fit_transform(
        np.asarray(embeddings, dtype=np.float32)
    )
    return xy, used


def pca(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First two principal components and their explained-variance ratios."""
    from sklearn.decomposition import PCA

    model = PCA(n_components=2, svd_solver="full")
    xy = model.fit_transform(np.asarray(embeddings, dtype=np.float64))
    return xy, model.explained_variance_ratio_


@dataclass(frozen=True)
class EmbeddingOptions:
    """Config analysis.embedding (perplexity, thumbnails), the seed and the layer named in titles."""

    perplexity: float
    thumbnails: int  # points drawn with a thumbnail
    seed: int = 0
    layer: str = "penultimate"  # convscope.backbones.embedding_layer


def _table(data: Labelled, preds, tsne_xy, pca_xy) -> pd.DataFrame:
    n = len(data.labels)
    classes = data.classes
    table = pd.DataFrame(
        {
            "row": np.arange(n),
            "file": data.files if data.files is not None else [""] * n,
            "label": data.labels,
            "class": [classes[k] for k in data.labels],
            "pred": [classes[k] for k in preds] if preds is not None else "",
        }
    )
    table["tsne_x"], table["tsne_y"] = tsne_xy[:, 0], tsne_xy[:, 1]
    table["pca_x"], table["pca_y"] = pca_xy[:, 0], pca_xy[:, 1]
    return table


def _items(tsne_png, pca_png, csv, out_dir) -> list[dict]:
    return [
        item(
            "image",
            tsne_png,
            "t-SNE of the features the classifier head sees, one point (and thumbnail) per test image, "
            "framed in its true class colour. Tight, separate clusters mean the classes are easy to "
            "separate; distances between clusters are not meaningful.",
            csv,
            root=out_dir,
        ),
        item(
            "image",
            pca_png,
            "The same features projected on their two main directions of variance (linear; distances "
            "are meaningful, but classes may overlap that t-SNE separates).",
            csv,
            root=out_dir,
        ),
    ]


def embedding_maps(embeddings, data: Labelled, out_dir, *, preds=None, options: EmbeddingOptions) -> dict:
    """t-SNE and PCA of `embeddings`, the output of `options.layer` (convscope.backbones.embedding_layer)."""
    out_dir = Path(out_dir)
    embeddings = np.asarray(embeddings).reshape(len(embeddings), -1)
    data = replace(data, labels=np.asarray(data.labels))
    n = len(embeddings)
    if n < 3:
        raise ValueError(f"t-SNE/PCA need at least 3 test images, the test split has {n}; add images or change split")
    tsne_xy, used = tsne(embeddings, perplexity=options.perplexity, seed=options.seed)
    pca_xy, ratio = pca(embeddings)
    csv = layout.AnalysisFolder(out_dir).embedding_csv
    _table(data, preds, tsne_xy, pca_xy).to_csv(csv, index=False)
    dim = embeddings.shape[1]
    scatter = plots.ScatterStyle(max_thumbs=options.thumbnails, seed=options.seed)
    tsne_png = plots.thumbnail_scatter(
        tsne_xy,
        data.images,
        data.labels,
        data.classes,
        layout.AnalysisFolder(out_dir).tsne_png,
        replace(scatter, title=f"t-SNE of {dim}-d {options.layer} embeddings (perplexity {used:g})"),
    )
    pca_png = plots.thumbnail_scatter(
        pca_xy,
        data.images,
        data.labels,
        data.classes,
        layout.AnalysisFolder(out_dir).pca_png,
        replace(scatter, title=f"PCA: PC1 {ratio[0]:.0%}, PC2 {ratio[1]:.0%} of variance"),
    )
    log.info("embeddings: %d x %d, t-SNE perplexity %g, PCA variance %.2f + %.2f", n, dim, used, *ratio)
    return section("embedding", "Embeddings of the test set", _items(tsne_png, pca_png, csv, out_dir))
