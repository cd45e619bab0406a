"""Data audit on frozen-base embeddings: likely label errors and train/test near-twins.

Both read the embeddings the `features` strategy computes once per backbone
(results/features/{backbone}/{split}.npy, rows in the prepared index's order), so
the audit costs no network pass:

- label issues (confident learning, cleanlab): out-of-sample class probabilities
  from k-fold logistic regression over the embeddings of every kept image, then
  cleanlab's ranking by label quality (self-confidence). A frozen base does not
  depend on the labels, so moving a label changes nothing but the label.
- leakage: a val or test image and a train image (or a test and a val image) are a
  near-twin pair only when they are near copies at pixel level
  (convscope.data.nearcopy: the aligned residual of the prepared images is under the
  train split's own median nearest-neighbour residual / `near_copy`). Candidates are
  each image's nearest neighbours in pixels and in the embedding; the embedding only
  proposes, because a fixed cosine similarity means nothing across bases (with random
  weights, unrelated digit scans sit at 0.97). Each pair records which search found
  it and the criterion that confirmed it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import atomic, layout

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ISSUE_COLUMNS = ["rank", "file", "split", "given", "suggested", "score", "issue"]
LEAK_COLUMNS = ["split", "file", "twin_split", "twin", "residual", "similarity", "found_by", "criterion"]
EMBEDDING_CANDIDATES = 5  # nearest neighbours in the embedding also scored at pixel level
PCA_DIMS = 64
# (query split, reference split) pairs the leakage audit compares.
LEAK_PAIRS = (("val", "train"), ("test", "train"), ("test", "val"))


@dataclass(frozen=True)
class Embedded:
    """Embeddings of every kept image with its labels and files (all splits stacked)."""

    x: np.ndarray
    labels: np.ndarray
    files: list[str]
    splits: np.ndarray  # split name per row


def load(features_dir: Path, prepared_dir: Path) -> Embedded:
    xs, ys, files, splits = [], [], [], []
    for split in SPLITS:
        x = np.load(layout.embedding_in(features_dir, split))
        y = np.load(layout.prepared_in(prepared_dir, split, layout.PREPARED_LABELS))
        index = pd.read_csv(layout.prepared_in(prepared_dir, split, layout.PREPARED_INDEX))
        if not len(x) == len(y) == len(index):
            raise ValueError(
                f"{features_dir}/{split}.npy has {len(x)} rows, {prepared_dir}/{split} {len(y)} labels and "
                f"{len(index)} index rows: re-run the embed rule for this backbone"
            )
        xs.append(x.reshape(len(x), -1).astype(np.float32))
        ys.append(y.astype(int))
        files += index["file"].astype(str).tolist()
        splits += [split] * len(x)
    return Embedded(np.concatenate(xs), np.concatenate(ys), files, np.array(splits))


def out_of_sample_probs(x: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """k-fold (stratified) probabilities of a logistic regression on standardised, PCA-reduced embeddings."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    smallest = int(np.bincount(labels).min())
    k = max(2, min(folds, smallest))
    # PCA to at most PCA_DIMS: a 1280-d embedding of a few hundred images otherwise costs a minute
    # of lbfgs per fold and overfits; the leading components keep what a linear head can use.
    dims = min(PCA_DIMS, x.shape[1], len(x) * (k - 1) // k - 1)
    model = make_pipeline(StandardScaler(), PCA(dims, random_state=seed), LogisticRegression(max_iter=500))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return cross_val_predict(model, x, labels, cv=cv, method="predict_proba")


# Where the label-issue probabilities come from (config audit.label_model), in the report's words.
LABEL_CRITERIA = {
    "embeddings": "cleanlab self-confidence on k-fold logistic-regression probabilities over the frozen-base embeddings",
    "cnn": "cleanlab self-confidence on k-fold probabilities of a small convnet trained on the prepared images",
}
RANDOM_WEIGHTS = (
    "none"  # a backbone's `weights` for random init: its embeddings rank label errors no better than pixels
)


def label_model(options: dict) -> str:
    """The k-fold convnet for a random-weight base, else its embeddings (audit.label_model = auto).

    ImageNet, pretrained and weights files keep logistic regression on the embeddings (today's path)."""
    chosen = options.get("label_model", "auto")
    if chosen != "auto":
        return chosen
    return "cnn" if options.get("weights", "imagenet") == RANDOM_WEIGHTS else "embeddings"


def prepared_images(prepared_dir: Path) -> np.ndarray:
    """The prepared uint8 images of every split, stacked in the order of `load`."""
    return np.concatenate([np.load(layout.prepared_in(prepared_dir, s)) for s in SPLITS])


def rank_label_issues(
    x: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0, model: str = "embeddings"
) -> tuple[np.ndarray, ...]:
    """(order, score, issue, suggested): rows most likely mislabelled first; score = 1 - label quality.

    model: "embeddings" (x: feature rows) or "cnn" (x: uint8 images, convscope.data.label_model)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    if model == "cnn":
        from convscope.data import label_model as cnn

        probs = cnn.out_of_sample_probs(x, labels, folds, seed)
    else:
        probs = out_of_sample_probs(x, labels, folds, seed)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    issue = find_label_issues(labels, probs, filter_by="prune_by_noise_rate")
    order = np.argsort(quality, kind="stable")
    return order, 1 - quality, issue, probs.argmax(axis=1)


def label_issues(data: Embedded, classes: list[str], folds: int, seed: int, model: str = "embeddings") -> pd.DataFrame:
    order, score, issue, suggested = rank_label_issues(data.x, data.labels, folds, seed, model)
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "file": [data.files[i] for i in order],
            "split": data.splits[order],
            "given": [classes[data.labels[i]] for i in order],
            "suggested": [classes[suggested[i]] for i in order],
            "score": np.round(score[order], 5),
            "issue": issue[order],
        }
    )


def prepared_thumbnails(prepared_dir: Path) -> list[np.ndarray]:
    """Near-copy thumbnails of the prepared images of every split, in the stacked order of `load`."""
    from PIL import Image

    from convscope.data import nearcopy

    out = []
    for split in SPLITS:
        for img in np.load(layout.prepared_in(prepared_dir, split), mmap_mode="r"):
            out.append(nearcopy.thumbnail(Image.fromarray(np.asarray(img))))
    return out


def _embedding_pairs(data: Embedded, q: np.ndarray, r: np.ndarray) -> set[tuple[int, int]]:
    """(query row, reference row) of each query's nearest reference images by cosine similarity."""
    from sklearn.neighbors import NearestNeighbors

    k = min(EMBEDDING_CANDIDATES, len(r))
    _, idx = NearestNeighbors(n_neighbors=k, metric="cosine").fit(data.x[r]).kneighbors(data.x[q])
    return {(int(qi), int(r[j])) for qi, row in zip(q, idx) for j in row}


def _cosine(x: np.ndarray, i: int, j: int) -> float:
    a, b = x[i], x[j]
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def near_twins(data: Embedded, thumbs: list[np.ndarray], factor: float, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """(val/test images with a near copy in an earlier split, closest first; the criterion in words)."""
    from convscope.data import nearcopy

    pixels = nearcopy.Pixels(thumbs, nearcopy.common_side(thumbs))
    cal = pixels.calibrate(np.nonzero(data.splits == "train")[0], factor, seed)
    if cal.threshold < 0:
        return pd.DataFrame([], columns=LEAK_COLUMNS), "off (audit.near_copy = 0)"
    rows = []
    for query, ref in LEAK_PAIRS:
        q, r = np.nonzero(data.splits == query)[0], np.nonzero(data.splits == ref)[0]
        if not len(q) or not len(r):
            continue
        by_embedding = _embedding_pairs(data, q, r)
        by_pixels = {(int(a), int(b)) for a, bs in pixels.candidates(q, r).items() for b in bs}
        for qi, found in pixels.matches(q, r, cal.threshold, extra=by_embedding).items():
            d, ri = found[0]
            how = [name for name, pairs in (("pixels", by_pixels), ("embedding", by_embedding)) if (qi, ri) in pairs]
            rows.append(
                (
                    query,
                    data.files[qi],
                    ref,
                    data.files[ri],
                    d,
                    round(_cosine(data.x, qi, ri), 5),
                    "+".join(how),
                    cal.describe(),
                )
            )
    twins = pd.DataFrame(rows, columns=LEAK_COLUMNS).sort_values("residual", kind="stable")
    return twins, cal.describe()


@dataclass(frozen=True)
class AuditPaths:
    issues: Path
    leakage: Path
    summary: Path


def run_audit(features_dir: Path, prepared_dir: Path, classes: list[str], options: dict, out: AuditPaths) -> dict:
    """The audit rule's one call: label_issues.csv, leakage.csv and audit.json for one backbone."""
    data = load(features_dir, prepared_dir)
    log.info("audit: %d embeddings of dimension %d from %s", len(data.x), data.x.shape[1], features_dir)
    model = label_model(options)
    x = data.x if model == "embeddings" else prepared_images(prepared_dir)
    issues = label_issues(
        Embedded(x, data.labels, data.files, data.splits), classes, int(options["folds"]), int(options["seed"]), model
    )
    twins, criterion = near_twins(data, prepared_thumbnails(prepared_dir), float(options.get("near_copy", 10)))
    test_twins = sorted(set(twins.loc[(twins["split"] == "test") & (twins["twin_split"] == "train"), "file"]))
    summary = {
        "images": len(data.x),
        "label_issues": int(issues["issue"].sum()),
        "label_model": model,
        "label_criterion": LABEL_CRITERIA[model],
        "folds": int(options["folds"]),
        "leakage_criterion": criterion,
        "near_twin_pairs": len(twins),
        "test_images": int((data.splits == "test").sum()),
        "test_with_train_twin": len(test_twins),
        "test_twin_files": test_twins,
    }
    from convscope import config as cfg

    shortcut_opts = cfg.merged("audit", options)["shortcuts"]  # library callers may pass less
    from convscope.data import shortcuts

    found = shortcuts.audit_block(prepared_dir, classes, shortcut_opts, int(options["seed"]))
    if found is not None:
        summary["shortcuts"] = found
    atomic.write_csv(out.issues, issues.to_dict("records"), ISSUE_COLUMNS)
    atomic.write_csv(out.leakage, twins.to_dict("records"), LEAK_COLUMNS)
    atomic.write_bytes(out.summary, (json.dumps(summary, indent=2) + "\n").encode())
    log.info(
        "audit: %d label issues, %d near-twin pairs, %d of %d test images have a twin in train",
        summary["label_issues"],
        len(twins),
        len(test_twins),
        summary["test_images"],
    )
    return summary


def scores(issues: pd.DataFrame, planted: set[str]) -> dict:
    """Recall = precision of the top k = len(planted) ranked files; recall/precision of cleanlab's issue set."""
    k = len(planted)
    top = set(issues["file"].head(k))
    found = set(issues.loc[issues["issue"].astype(bool), "file"])
    return {
        "planted": k,
        "at_k": len(top & planted) / max(k, 1),
        "issue_set": len(found),
        "issue_recall": len(found & planted) / max(k, 1),
        "issue_precision": len(found & planted) / max(len(found), 1),
    }
