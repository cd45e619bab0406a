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
    analysis/{backbone}/{run}/      index.json and every figure and table (AnalysisFolder; explain/: ExplainFolder),
                                    the records the report's findings read (ANALYSIS_RECORDS)
    analysis/grid/                  index.json, runs.csv, best.json, heatmaps, strategies, ... (GridFolder)
    analysis/grid/by_strategy/{backbone}/  CKA and corruptions, a line per strategy (ByStrategyFolder)
    analysis/probes/{backbone}/{run}/      cka.*, corruptions.* of strategy-best runs not analysed
    logs/, benchmarks/, report/, cache/jax/ (JAX's persistent compilation cache: no result, safe to delete)
    predict/{backbone}/{run}/       predictions.csv (of the new images), index.html, overlays/, cache/ (the predict target)
    export/{backbone}/{run}/        model.keras, saved_model/, export.json (the export target)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")
# What training jobs read (fit.json); the test split is the evaluate jobs' alone.
FIT_SPLITS = ("train", "val")
# One prepared set per split: images (N x H x W x 3 uint8), labels, and the source files in order.
PREPARED_IMAGES, PREPARED_LABELS, PREPARED_INDEX = "npy", "labels.npy", "index.csv"
PREPARED_KINDS = (PREPARED_IMAGES, PREPARED_LABELS, PREPARED_INDEX)
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
AUDIT_SUMMARY = "audit.json"  # an audit/{backbone}/ folder's summary: its presence marks an audited backbone
EXPORT_CHECK = "export.json"  # an export folder's check that the exported formats reproduce the model
PAGE = "index.html"  # the report's and the predict target's page
STANDALONE = "report-standalone.html"  # the report with every figure embedded (report.self_contained)
PRETRAINED_BASE, PRETRAIN_RECORD = "base.weights.h5", "pretrain.json"  # a pretrained/{backbone}/ folder


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


def options_beside(manifest_csv) -> Path:
    """The sidecar recording the deciding options of a clean manifest (clean/manifest.options.json)."""
    return Path(manifest_csv).with_suffix(".options.json")


def synthetic_image_name(index: int) -> str:
    """A drawn image's file name in raw/{cls}/ (convscope.data.synthetic)."""
    return f"{index:06d}.png"


def ledger_beside(crawl_summary) -> Path:
    """The ledger in the folder of a class's crawl.json (the crawl rule's declared output)."""
    return Path(crawl_summary).parent / LEDGER


def _file(name: str) -> property:
    """A file of a folder class below: `folder.path / name`, the name spelled here only."""
    return property(lambda self: self.path / name, doc=name)


# ---- inside an analysis folder --------------------------------------------------------
# The analyse job owns analysis/{backbone}/{run}/. index.json is the report's table of contents
# for the figures and tables; the records in ANALYSIS_RECORDS are also read by name (the
# report's findings, via convscope.records), so the analyse rule declares them as outputs
# and the job writes each one, a "not run" record when its analysis was off or not applicable.
@dataclass(frozen=True)
class ExplainFolder:
    """analysis/{backbone}/{run}/explain/: the explanation analyses (convscope.analysis.explain.run)."""

    path: Path

    def __init__(self, path):
        object.__setattr__(self, "path", Path(path))

    samples_csv = _file("explained_samples.csv")
    maps_npz = _file("maps.npz")
    filter_vis_csv = _file("filter_vis.csv")
    filter_vis_png = _file("filter_vis.png")
    change_json = _file("change.json")
    change_channels_csv = _file("change_channels.csv")
    change_channels_png = _file("change_channels.png")
    weight_change_csv = _file("weight_change.csv")
    weight_change_png = _file("weight_change.png")
    dead_channels_json = _file("dead_channels.json")
    timings = _file("timings.json")
    pointing = _file("pointing.json")  # records.POINTING
    pointing_csv = _file("pointing.csv")
    pointing_png = _file("pointing.png")
    faithfulness_csv = _file("faithfulness.csv")
    faithfulness_json = _file("faithfulness.json")
    deletion = _file("deletion.json")  # records.DELETION
    deletion_csv = _file("deletion.csv")
    ig_completeness = _file("ig_completeness.json")
    sanity = _file("sanity.json")  # records.SANITY
    sanity_csv = _file("sanity.csv")
    sanity_png = _file("sanity.png")
    method_ranking_csv = _file("method_ranking.csv")
    border_mass = _file("border_mass.json")  # records.BORDER_MASS
    border_mass_csv = _file("border_mass.csv")

    def figure_png(self, figure: str) -> Path:
        """One figure of maps (a figure group of convscope.analysis.explain.maps)."""
        return self.path / f"{figure}.png"

    def curves_png(self, direction: str) -> Path:
        """Deletion or insertion curves."""
        return self.path / f"{direction}.png"


@dataclass(frozen=True)
class AnalysisFolder:
    """analysis/{backbone}/{run}/: what one analyse job writes (convscope.analysis.run)."""

    path: Path

    def __init__(self, path):
        object.__setattr__(self, "path", Path(path))

    index = _file(INDEX)
    # Every test image with true class, prediction and class probabilities (not predict/'s
    # predictions.csv of new images, nor the run's test_predictions.csv).
    probabilities = _file("test_probabilities.csv")
    timings = _file("timings.json")
    frozen = _file("frozen.json")  # records.FROZEN
    calibration = _file("calibration.json")  # records.CALIBRATION
    calibration_csv = _file("calibration.csv")
    calibration_png = _file("calibration.png")
    cka = _file("cka.json")  # records.CKA
    cka_csv = _file("cka.csv")
    cka_png = _file("cka.png")
    corruptions = _file("corruptions.json")  # records.CORRUPTIONS
    corruptions_csv = _file("corruptions.csv")
    corruptions_png = _file("corruptions.png")
    curves_csv = _file("curves.csv")
    curves_png = _file("curves.png")
    confusion_csv = _file("confusion.csv")
    confusion_png = _file("confusion.png")
    per_class_csv = _file("per_class.csv")
    examples_csv = _file("examples.csv")
    top_images_png = _file("top_images.png")
    mistakes_png = _file("mistakes.png")
    embedding_csv = _file("embedding.csv")
    tsne_png = _file("tsne.png")
    pca_png = _file("pca.png")
    filters_csv = _file("filters.csv")
    filters_png = _file("filters.png")
    activations_csv = _file("activations.csv")

    def activations_png(self, depth: str, layer: str) -> Path:
        return self.path / f"activations_{depth}_{layer}.png"

    @property
    def explain(self) -> ExplainFolder:
        return ExplainFolder(self.path / "explain")

    @property
    def records(self) -> dict[str, Path]:
        """The records read by name (the analyse rule's outputs besides index.json), by record name."""
        e = self.explain
        return {
            "frozen": self.frozen,
            "calibration": self.calibration,
            "cka": self.cka,
            "corruptions": self.corruptions,
            "pointing": e.pointing,
            "deletion": e.deletion,
            "sanity": e.sanity,
            "border_mass": e.border_mass,
        }


# The analyses a probe job runs (convscope.analysis.probe), by record name.
PROBED = ("cka", "corruptions")


@dataclass(frozen=True)
class GridFolder:
    """analysis/grid/: the grid summary (convscope.analysis.grid.summary)."""

    path: Path

    def __init__(self, path):
        object.__setattr__(self, "path", Path(path))

    index = _file(INDEX)
    runs_csv = _file("runs.csv")
    best_json = _file("best.json")
    seeds_csv = _file("seeds.csv")
    comparisons_csv = _file("comparisons.csv")
    heatmaps_csv = _file("heatmaps.csv")
    strategies_csv = _file("strategies.csv")
    strategies_png = _file("strategies.png")

    def heatmaps_png(self, backbone: str) -> Path:
        return self.path / f"heatmaps_{backbone}.png"


@dataclass(frozen=True)
class ByStrategyFolder:
    """analysis/grid/by_strategy/{backbone}/: one backbone's strategies side by side (the strategy_change
    job, convscope.analysis.grid.by_strategy): CKA against depth and accuracy under corruptions, one line
    per best run of each (strategy, tune_depth)."""

    path: Path

    def __init__(self, path):
        object.__setattr__(self, "path", Path(path))

    index = _file(INDEX)
    record = _file("by_strategy.json")  # records.BY_STRATEGY: the findings sentences
    cka_csv = _file("cka.csv")  # one row per (run, block): the lines of cka.png
    cka_png = _file("cka.png")
    corruptions_csv = _file("corruptions.csv")  # backbone, strategy, run, corruption, severity, accuracy
    corruptions_png = _file("corruptions.png")

    @property
    def outputs(self) -> dict[str, Path]:
        """Everything the strategy_change job writes, by output name."""
        names = ("index", "record", "cka_csv", "cka_png", "corruptions_csv", "corruptions_png")
        return {n: getattr(self, n) for n in names}


@dataclass(frozen=True)
class BackupFolder:
    """models/{backbone}/{run}/backup/: what a training job needs to resume after a kill
    (convscope.training.run); removed once the run is complete."""

    path: Path

    def __init__(self, path):
        object.__setattr__(self, "path", Path(path))

    settings = _file("params.json")  # the run's settings: a backup made under others is discarded
    best = _file("best.npz")  # the best epoch's weights so far (KeepBest)
    history = _file(HISTORY)  # every finished epoch, across phases

    def phase_dir(self, index: int) -> Path:
        """One phase's epoch backups (convscope.training.callbacks.EpochBackup)."""
        return self.path / f"phase{index}"

    def phase_weights(self, index: int) -> Path:
        """The weights at the end of a finished phase: its done mark."""
        return self.path / f"phase{index}.weights.h5"


EPOCH_STATE = "state.npz"  # one epoch backup: weights, optimizer and epoch (in BackupFolder.phase_dir)


@dataclass(frozen=True)
class PredictFolder:
    """predict/{backbone}/{run}/: one model over a folder of new images (convscope.predict.apply)."""

    path: Path

    def __init__(self, path):
        object.__setattr__(self, "path", Path(path))

    predictions = _file("predictions.csv")  # top-k per new image (not a run's test_predictions.csv)
    page = _file(PAGE)
    overlays = _file("overlays")
    cache = _file("cache")

    @staticmethod
    def overlay_name(sha256: str) -> str:
        """An image's Grad-CAM overlay, relative to the folder (the page links it)."""
        return f"overlays/{sha256[:16]}.jpg"

    @staticmethod
    def cache_entry(folder, sha256: str) -> Path:
        """One image's cached result in cache/{key}/."""
        return Path(folder) / f"{sha256}.json"


@dataclass(frozen=True)
class ExportFolder:
    """export/{backbone}/{run}/: a model in the formats users load (convscope.export)."""

    path: Path

    def __init__(self, path):
        object.__setattr__(self, "path", Path(path))

    keras = _file(MODEL)
    saved_model = _file("saved_model")
    check = _file(EXPORT_CHECK)


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

    def split_digest(self, split: str) -> Path:
        """clean/splits/{split}.sha256: the SHA-256 of that split's list (`sha256sum -c` reads it).

        The rules after split take this small file as input instead of the list: Snakemake
        compares checksums of files up to 1 MB only, and a list passes that at about 9,000
        images, after which a rewrite with the same bytes would rerun everything after it.
        """
        return self.root / "clean" / "splits" / f"{split}.sha256"

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
    @property
    def audits_dir(self) -> Path:
        """audit/: one folder per audited backbone."""
        return self.root / "audit"

    def audit_dir(self, backbone: str) -> Path:
        return self.audits_dir / backbone

    def label_issues(self, backbone: str) -> Path:
        return self.audit_dir(backbone) / "label_issues.csv"

    def leakage(self, backbone: str) -> Path:
        return self.audit_dir(backbone) / "leakage.csv"

    def audit_summary(self, backbone: str) -> Path:
        return self.audit_dir(backbone) / AUDIT_SUMMARY

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
        return self.analysis(backbone, run).index

    def analysis(self, backbone: str, run: str) -> AnalysisFolder:
        return AnalysisFolder(self.analysis_dir(backbone, run))

    def analysis_records(self, backbone: str, run: str) -> dict[str, Path]:
        """The records an analyse job writes besides index.json (its declared outputs)."""
        return self.analysis(backbone, run).records

    def probe_dir(self, backbone: str, run: str) -> Path:
        """analysis/probes/{backbone}/{run}/: CKA and corruptions of a strategy's best run that is not analysed."""
        return self.analyses_dir / "probes" / backbone / run

    def probe(self, backbone: str, run: str) -> AnalysisFolder:
        """A probe folder holds the CKA and corruption files of an analysis folder, nothing else."""
        return AnalysisFolder(self.probe_dir(backbone, run))

    def probe_records(self, backbone: str, run: str) -> dict[str, Path]:
        """What a probe job writes and the strategy_change job reads: the cka and corruptions records."""
        return {k: v for k, v in self.probe(backbone, run).records.items() if k in PROBED}

    @property
    def grid_dir(self) -> Path:
        return self.analyses_dir / "grid"

    def by_strategy(self, backbone: str) -> ByStrategyFolder:
        return ByStrategyFolder(self.grid_dir / "by_strategy" / backbone)

    @property
    def grid(self) -> GridFolder:
        return GridFolder(self.grid_dir)

    @property
    def grid_index(self) -> Path:
        return self.grid.index

    @property
    def runs_csv(self) -> Path:
        return self.grid.runs_csv

    @property
    def best_json(self) -> Path:
        return self.grid.best_json

    @property
    def seeds_csv(self) -> Path:
        return self.grid.seeds_csv

    @property
    def comparisons_csv(self) -> Path:
        return self.grid.comparisons_csv

    @property
    def heatmaps_csv(self) -> Path:
        return self.grid.heatmaps_csv

    @property
    def strategies_csv(self) -> Path:
        return self.grid.strategies_csv

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
    def compile_cache(self) -> Path:
        """cache/jax/: JAX's persistent compilation cache, shared by every Keras job (convscope.entry.job)."""
        return self.root / "cache" / "jax"

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    @property
    def report_page(self) -> Path:
        return self.report_dir / PAGE

    @property
    def report_standalone(self) -> Path:
        return self.report_dir / STANDALONE

    # ---- trained models put to work (predict, export) --------------------------
    def predict_dir(self, backbone: str, run: str) -> Path:
        return self.root / "predict" / backbone / run

    def predictions(self, backbone: str, run: str) -> Path:
        return PredictFolder(self.predict_dir(backbone, run)).predictions

    def predict_page(self, backbone: str, run: str) -> Path:
        return PredictFolder(self.predict_dir(backbone, run)).page

    def export_dir(self, backbone: str, run: str) -> Path:
        return self.root / "export" / backbone / run

    def export_keras(self, backbone: str, run: str) -> Path:
        return ExportFolder(self.export_dir(backbone, run)).keras

    def export_saved_model(self, backbone: str, run: str) -> Path:
        return ExportFolder(self.export_dir(backbone, run)).saved_model

    def export_check(self, backbone: str, run: str) -> Path:
        return ExportFolder(self.export_dir(backbone, run)).check
