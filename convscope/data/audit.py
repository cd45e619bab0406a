"""Data audit on frozen-base embeddings: likely label errors and train/test near-twins.

Both read the embeddings the `features` strategy computes once per backbone
(results/features/{backbone}/{split}.npy, rows in the prepared index's order), so
the audit costs no network pass:

- label issues (confident learning, cleanlab): out-of-sample class probabilities
  from k-fold logistic regression over the embeddings of every kept image, then
  cleanlab's ranking by label quality (self-confidence). A frozen base does not
  depend on the labels, so moving a label changes nothing but the label.
- leakage: for every val and test image its nearest train image (and for test its
  nearest val image) by cosine similarity; pairs at or above the threshold are
  near-twins, and test images with a twin in train are counted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import atomic

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ISSUE_COLUMNS = ["rank", "file", "split", "given", "suggested", "score", "issue"]
LEAK_COLUMNS = ["split", "file", "twin_split", "twin", "similarity"]
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
        x = np.load(Path(features_dir) / f"{split}.npy")
        y = np.load(Path(prepared_dir) / f"{split}.labels.npy")
        index = pd.read_csv(Path(prepared_dir) / f"{split}.index.csv")
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


def rank_label_issues(x: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(order, score, issue, suggested): rows most likely mislabelled first; score = 1 - label quality."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    probs = out_of_sample_probs(x, labels, folds, seed)
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    issue = find_label_issues(labels, probs, filter_by="prune_by_noise_rate")
    order = np.argsort(quality, kind="stable")
    return order, 1 - quality, issue, probs.argmax(axis=1)


def label_issues(data: Embedded, classes: list[str], folds: int, seed: int) -> pd.DataFrame:
    order, score, issue, suggested = rank_label_issues(data.x, data.labels, folds, seed)
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


def near_twins(data: Embedded, threshold: float) -> pd.DataFrame:
    """Each val/test image's nearest neighbour in the earlier splits, kept if cosine similarity >= threshold."""
    from sklearn.neighbors import NearestNeighbors

    rows = []
    for query, ref in LEAK_PAIRS:
        q, r = data.splits == query, data.splits == ref
        if not q.any() or not r.any():
            continue
        nn = NearestNeighbors(n_neighbors=1, metric="cosine").fit(data.x[r])
        dist, idx = nn.kneighbors(data.x[q])
        ref_files = [f for f, s in zip(data.files, data.splits) if s == ref]
        for file, d, i in zip([f for f, s in zip(data.files, data.splits) if s == query], dist[:, 0], idx[:, 0]):
            if 1 - d >= threshold:
                rows.append((query, file, ref, ref_files[i], round(float(1 - d), 5)))
    return pd.DataFrame(rows, columns=LEAK_COLUMNS).sort_values("similarity", ascending=False, kind="stable")


@dataclass(frozen=True)
class AuditPaths:
    issues: Path
    leakage: Path
    summary: Path


def run_audit(features_dir: Path, prepared_dir: Path, classes: list[str], options: dict, out: AuditPaths) -> dict:
    """The audit rule's one call: label_issues.csv, leakage.csv and audit.json for one backbone."""
    data = load(features_dir, prepared_dir)
    log.info("audit: %d embeddings of dimension %d from %s", len(data.x), data.x.shape[1], features_dir)
    issues = label_issues(data, classes, int(options["folds"]), int(options["seed"]))
    twins = near_twins(data, float(options["leakage_similarity"]))
    test_twins = sorted(set(twins.loc[(twins["split"] == "test") & (twins["twin_split"] == "train"), "file"]))
    summary = {
        "images": len(data.x),
        "label_issues": int(issues["issue"].sum()),
        "folds": int(options["folds"]),
        "leakage_similarity": float(options["leakage_similarity"]),
        "near_twin_pairs": len(twins),
        "test_images": int((data.splits == "test").sum()),
        "test_with_train_twin": len(test_twins),
        "test_twin_files": test_twins,
    }
    from convscope import config as cfg

    shortcut_opts = cfg.merged("audit", options)["shortcuts"]  # library callers may pass less
    if shortcut_opts["enabled"]:
        from convscope.data import shortcuts

        found = shortcuts.audit_prepared(prepared_dir, classes, float(shortcut_opts["auc"]), int(options["seed"]))
        summary["shortcuts"] = {k: found[k] for k in ("statement", "flagged", "auc_threshold")}
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
