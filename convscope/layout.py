"""The results tree: every path a stage writes or reads, one place.

`Results(root)` names each file; `rules/common.smk`, the scripts, the package and
the tests ask it instead of spelling paths. Methods take plain strings, so
Snakemake wildcards pass through: `Results(R).metrics("{backbone}", "{run}")`.

    raw/{cls}/                      downloads, ledger manifest.csv, crawl.json (summary), boxes.csv (synthetic)
    clean/manifest.csv, splits/{split}.csv (one list per split: an edit to one leaves the others' bytes)
    prepared/{size}/{split}.{npy,labels.npy,index.csv}
    pretrained/{backbone}/          base.weights.h5, pretrain.json (optional pretraining on source classes)
    models/{backbone}/{run}/        model.keras, history.csv | head.npz; fit.json (train/val, the
                                    training job's), metrics.json + test_predictions.csv (evaluate's)
    features/{backbone}/            {split}.npy embeddings, {split}.embed.json
    audit/{backbone}/               label_issues.csv, leakage.csv, audit.json
    sanity/{backbone}/imagenet_top5.csv
    analysis/{backbone}/{run}/index.json, analysis/grid/ (index.json, runs.csv, best.json, ...)
    logs/, benchmarks/, report/
    predict/{backbone}/{run}/       predictions.csv, index.html, overlays/, cache/ (the predict target)
    export/{backbone}/{run}/        model.keras, saved_model/, export.json (the export target)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")
# What training jobs read (fit.json); the test split is the evaluate jobs' alone.
FIT_SPLITS = ("train", "val")
# One prepared set per split: images (N x H x W x 3 uint8), labels, and the source files in order.
PREPARED_KINDS = ("npy", "labels.npy", "index.csv")
LEDGER = "manifest.csv"  # a class's crawl ledger, raw/{cls}/manifest.csv
BOXES = "boxes.csv"  # object boxes of a synthetic class, raw/{cls}/boxes.csv
CRAWL_SUMMARY = "crawl.json"
MODEL, HISTORY, METRICS, HEAD = "model.keras", "history.csv", "metrics.json", "head.npz"
# What the training job measured (val scores, kept epoch, costs): evaluate adds the test split's
# scores to it and writes metrics.json, so an edit of the test split never retrains.
FIT = "fit.json"
# Per-image test predictions of a run (convscope.records.write_predictions): what the grid
# summary's paired tests compare between two runs on the same images.
PREDICTIONS = "test_predictions.csv"
TRAIN_OUTPUTS = (MODEL, HISTORY, FIT, PREDICTIONS, METRICS)  # a trained run's folder
FEATURES_OUTPUTS = (HEAD, FIT, METRICS, PREDICTIONS)  # a features head's folder (model.keras only on demand)
INDEX = "index.json"  # an analysis folder's table of contents
PRETRAINED_BASE, PRETRAIN_RECORD = "base.weights.h5", "pretrain.json"  # a pretrained/{backbone}/ folder
# An analysis folder's representation change per block (convscope.analysis.standard.cka).
CKA_CSV, CKA_JSON, CKA_PNG = "cka.csv", "cka.json", "cka.png"
# ... and its test accuracy under common corruptions (convscope.analysis.trust.corruptions).
CORRUPTIONS_CSV, CORRUPTIONS_JSON, CORRUPTIONS_PNG = "corruptions.csv", "corruptions.json", "corruptions.png"


# File names inside a folder a job was handed (the rule declared the files as inputs).
def prepared_in(folder, split: str, kind: str = "npy") -> Path:
    """{split}.{kind} of a prepared/{size}/ folder."""
    return Path(folder) / f"{split}.{kind}"


def embedding_in(folder, split: str) -> Path:
    """{split}.npy of a features/{backbone}/ folder."""
    return Path(folder) / f"{split}.npy"


def embed_info_in(folder, split: str) -> Path:
    """{split}.embed.json of a features/{backbone}/ folder: how that split's embeddings were made."""
    return Path(folder) / f"{split}.embed.json"


def ledger_beside(crawl_summary) -> Path:
    """The ledger in the folder of a class's crawl.json (the crawl rule's declared output)."""
    return Path(crawl_summary).parent / LEDGER


@dataclass(frozen=True)
class Results:
    root: Path

    def __init__(self, root):
        object.__setattr__(self, "root", Path(root))

    # ---- data ------------------------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    def raw(self, cls: str) -> Path:
        return self.raw_dir / cls

    def crawl_summary(self, cls: str) -> Path:
        return self.raw(cls) / CRAWL_SUMMARY

    def ledger(self, cls: str) -> Path:
        return self.raw(cls) / LEDGER

    def boxes(self, cls: str) -> Path:
        return self.raw(cls) / BOXES

    @property
    def clean_manifest(self) -> Path:
        return self.root / "clean" / "manifest.csv"

    def split_list(self, split: str) -> Path:
        """clean/splits/{split}.csv: the kept images of one split (the split stage's)."""
        return self.root / "clean" / "splits" / f"{split}.csv"

    @property
    def split_lists(self) -> list[Path]:
        return [self.split_list(s) for s in SPLITS]

    def prepared_dir(self, size) -> Path:
        return self.root / "prepared" / str(size)

    def prepared(self, size, split: str, kind: str = "npy") -> Path:
        return prepared_in(self.prepared_dir(size), split, kind)

    def prepared_split_files(self, size, split: str) -> list[Path]:
        """What one prepare job writes: a split's arrays and index at one size."""
        return [self.prepared(size, split, k) for k in PREPARED_KINDS]

    def prepared_files(self, size) -> list[Path]:
        return [f for s in SPLITS for f in self.prepared_split_files(size, s)]

    # ---- pretraining -------------------------------------------------------------
    def pretrained_dir(self, backbone: str) -> Path:
        return self.root / "pretrained" / backbone

    def pretrained_base(self, backbone: str) -> Path:
        """What `backbones.<name>.weights: pretrained` loads."""
        return self.pretrained_dir(backbone) / PRETRAINED_BASE

    def pretrain_record(self, backbone: str) -> Path:
        return self.pretrained_dir(backbone) / PRETRAIN_RECORD

    # ---- models ----------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def backbone_models(self, backbone: str) -> Path:
        """models/{backbone}/: one folder per run."""
        return self.models_dir / backbone

    def run_dir(self, backbone: str, run: str) -> Path:
        return self.backbone_models(backbone) / run

    def metrics(self, backbone: str, run: str) -> Path:
        return self.run_dir(backbone, run) / METRICS

    def fit(self, backbone: str, run: str) -> Path:
        return self.run_dir(backbone, run) / FIT

    def model(self, backbone: str, run: str) -> Path:
        return self.run_dir(backbone, run) / MODEL

    def history(self, backbone: str, run: str) -> Path:
        return self.run_dir(backbone, run) / HISTORY

    def test_predictions(self, backbone: str, run: str) -> Path:
        """A run's per-image test predictions (not predict/'s predictions of new images)."""
        return self.run_dir(backbone, run) / PREDICTIONS

    def head(self, backbone: str, run: str) -> Path:
        return self.run_dir(backbone, run) / HEAD

    def features_dir(self, backbone: str) -> Path:
        return self.root / "features" / backbone

    def embedding(self, backbone: str, split: str) -> Path:
        return embedding_in(self.features_dir(backbone), split)

    def embeddings(self, backbone: str) -> list[Path]:
        """The frozen base's embeddings, one file per split in SPLITS order."""
        return [self.embedding(backbone, s) for s in SPLITS]

    def embed_info(self, backbone: str, split: str) -> Path:
        return embed_info_in(self.features_dir(backbone), split)

    # ---- data audit (convscope/data/audit.py) -----------------------------------------
    def audit_dir(self, backbone: str) -> Path:
        return self.root / "audit" / backbone

    def label_issues(self, backbone: str) -> Path:
        return self.audit_dir(backbone) / "label_issues.csv"

    def leakage(self, backbone: str) -> Path:
        return self.audit_dir(backbone) / "leakage.csv"

    def audit_summary(self, backbone: str) -> Path:
        return self.audit_dir(backbone) / "audit.json"

    def sanity(self, backbone: str) -> Path:
        return self.root / "sanity" / backbone / "imagenet_top5.csv"

    # ---- analyses --------------------------------------------------------------
    @property
    def analyses_dir(self) -> Path:
        return self.root / "analysis"

    def backbone_analyses(self, backbone: str) -> Path:
        """analysis/{backbone}/: one folder per analysed run."""
        return self.analyses_dir / backbone

    def analysis_dir(self, backbone: str, run: str) -> Path:
        return self.backbone_analyses(backbone) / run

    def analysis_index(self, backbone: str, run: str) -> Path:
        return self.analysis_dir(backbone, run) / INDEX

    @property
    def grid_dir(self) -> Path:
        return self.analyses_dir / "grid"

    @property
    def grid_index(self) -> Path:
        return self.grid_dir / INDEX

    @property
    def runs_csv(self) -> Path:
        return self.grid_dir / "runs.csv"

    @property
    def best_json(self) -> Path:
        return self.grid_dir / "best.json"

    @property
    def seeds_csv(self) -> Path:
        return self.grid_dir / "seeds.csv"

    @property
    def comparisons_csv(self) -> Path:
        return self.grid_dir / "comparisons.csv"

    # ---- bookkeeping and the report --------------------------------------------
    @property
    def lock(self) -> Path:
        """Held by the main process of the snakemake run writing this folder (convscope/results_lock.py)."""
        return self.root / ".lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, *parts: str) -> Path:
        """logs/<parts...>.log, e.g. log("train", "{backbone}", "{run}")."""
        return self.logs.joinpath(*parts[:-1], f"{parts[-1]}.log")

    @property
    def benchmarks(self) -> Path:
        return self.root / "benchmarks"

    def benchmark(self, *parts: str) -> Path:
        """benchmarks/<parts...>.tsv, Snakemake's per-job benchmark file."""
        return self.benchmarks.joinpath(*parts[:-1], f"{parts[-1]}.tsv")

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def report_page(self) -> Path:
        return self.report_dir / "index.html"

    # ---- trained models put to work (predict, export) --------------------------
    def predict_dir(self, backbone: str, run: str) -> Path:
        return self.root / "predict" / backbone / run

    def predictions(self, backbone: str, run: str) -> Path:
        return self.predict_dir(backbone, run) / "predictions.csv"

    def predict_page(self, backbone: str, run: str) -> Path:
        return self.predict_dir(backbone, run) / "index.html"

    def export_dir(self, backbone: str, run: str) -> Path:
        return self.root / "export" / backbone / run

    def export_keras(self, backbone: str, run: str) -> Path:
        return self.export_dir(backbone, run) / "model.keras"

    def export_saved_model(self, backbone: str, run: str) -> Path:
        return self.export_dir(backbone, run) / "saved_model"

    def export_check(self, backbone: str, run: str) -> Path:
        return self.export_dir(backbone, run) / "export.json"
