"""What stages hand each other: one writer and one reader per record.

- RunMetrics: a run's metrics.json (trained runs and features heads alike), read by
  the grid summary, the analyses and the report; and its fit.json, the same record
  without "test": the training job writes it, the evaluate job adds the test scores.
- BestRun: one backbone's entry of best.json (the grid summary's choice), read by
  rules/common.smk and the report.
- Per-image test predictions (models/{backbone}/{run}/test_predictions.csv), written
  by trained runs and features heads, read by the grid summary's paired tests.
- Index sections carry an explicit `group` (convscope.analysis.index), so the report
  places them without matching names.
- Status strings of the data stages (ledger rows, clean manifest rows).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from convscope import atomic

# ---- status strings (written by the data stages, read by the report) -----------
# A crawl ledger row (raw/{cls}/manifest.csv).
OK, DUPLICATE, REJECTED, FAILED, MISSING = "ok", "duplicate", "rejected", "failed", "missing"
# A clean manifest row (clean/manifest.csv).
KEPT, QUARANTINED = "kept", "quarantined"

# ---- index.json section groups ---------------------------------------------------
# Where the report shows a section: with its model or grid (RESULTS), side by side
# across backbones as explanation checks (CHECKS), or not at all because the report
# draws that file itself (OWN_TABLE: runs.csv and best.json).
RESULTS, CHECKS, OWN_TABLE = "results", "checks", "own_table"
GROUPS = (RESULTS, CHECKS, OWN_TABLE)


# ---- run metrics (models/{backbone}/{run}/metrics.json) ---------------------------
@dataclass
class RunMetrics:
    """A run's evaluation: the fields every run has, plus what its strategy adds (`extra`).

    val/test: convscope.training.metrics.evaluate (+ test "accuracy_ci95").
    """

    backbone: str
    run: str
    strategy: str
    val: dict
    test: dict
    hp: dict = field(default_factory=dict)
    classes: list = field(default_factory=list)
    seed: int | None = None
    train_time_s: float | None = None
    images_per_s: float | None = None
    versions: dict = field(default_factory=dict)  # library versions; trained runs name the Keras "backend"
    extra: dict = field(default_factory=dict)  # strategy-specific: phases, embedding, fixed costs, ...

    @classmethod
    def from_dict(
        cls, raw: dict, where, required: tuple = ("backbone", "run", "strategy", "val", "test")
    ) -> RunMetrics:
        """From metrics.json's layout; ValueError naming `where` when a field every run has is missing."""
        missing = [k for k in required if k not in raw]
        if missing:
            raise ValueError(
                f"{where}: lacks {missing}; it was written by an older version of its job, re-run that job"
            )
        known = {"test": {}, **{k: raw[k] for k in _FIELDS if k in raw}}
        return cls(**known, extra={k: v for k, v in raw.items() if k not in _FIELDS})

    def to_json(self) -> dict:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**fields, **self.extra}


_FIELDS = tuple(f.name for f in dataclasses.fields(RunMetrics) if f.name != "extra")


def write_metrics(path, m: RunMetrics) -> None:
    """metrics.json, atomically: the run's "complete" mark, so written last."""
    atomic.write_json(path, m.to_json())


def read_metrics(path) -> RunMetrics:
    """A run's metrics.json; raises ValueError naming the file and what to re-run."""
    return RunMetrics.from_dict(_read_json(path, "the evaluate job of this run"), path)


_FIT_REQUIRED = ("backbone", "run", "strategy", "val")


def write_fit(path, record: dict, where) -> None:
    """fit.json: the training job's record, all of metrics.json but "test"; written last.

    record: metrics.json's layout without "test"; ValueError naming `where` when it lacks a field.
    """
    m = RunMetrics.from_dict(record, where, required=_FIT_REQUIRED)
    atomic.write_json(path, {k: v for k, v in m.to_json().items() if k != "test"})


def read_fit(path) -> RunMetrics:
    """A run's fit.json as RunMetrics with an empty "test"."""
    return RunMetrics.from_dict(_read_json(path, "the training job of this run"), path, required=_FIT_REQUIRED)


def _read_json(path, producer: str) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable ({e}); re-run {producer}") from e


# ---- per-image test predictions (models/{backbone}/{run}/test_predictions.csv) ----
def write_predictions(path, y_true, scores) -> None:
    """One row per test image in the prepared split's order: row, true and predicted class
    index, and the top score (the confidence, when scores are probabilities)."""
    import numpy as np

    scores = np.asarray(scores, dtype="float64")
    pred, top = scores.argmax(axis=1), scores.max(axis=1)
    rows = [
        {"row": i, "true": int(t), "pred": int(p), "top_score": f"{s:.6g}"}
        for i, (t, p, s) in enumerate(zip(np.asarray(y_true).astype(int), pred, top))
    ]
    atomic.write_csv(path, rows, ["row", "true", "pred", "top_score"])


def read_predictions(path):
    """(true, pred) class indices as arrays, in row order; ValueError naming the file when malformed."""
    import pandas as pd

    table = pd.read_csv(path)
    missing = {"row", "true", "pred"} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: lacks column(s) {sorted(missing)}; re-run the run's training job")
    table = table.sort_values("row")
    return table["true"].to_numpy(int), table["pred"].to_numpy(int)


# ---- the best run per backbone (analysis/grid/best.json) ------------------------
@dataclass(frozen=True)
class BestRun:
    """The grid summary's choice for one backbone: the run analysed in detail, and the best
    trained, features and overall runs it was chosen among (each a dict of the first seven
    fields plus test_ece, seeds, val_accuracy_seed_mean; None when there is no such run),
    and the best run of each (strategy, tune_depth)."""

    run: str
    strategy: str
    val_accuracy: float
    test_accuracy: float
    test_ci95_low: float
    test_ci95_high: float
    runs: int  # runs of this backbone with a validation accuracy
    test_ece: float | None = None  # expected calibration error on test (None: no probabilities)
    seeds: int = 1  # runs that differ from this one only by seed, itself included
    val_accuracy_seed_mean: float | None = None
    chosen_as: str = ""  # why this run: "best trained run, by validation accuracy", ...
    best_trained: dict | None = None
    best_features: dict | None = None
    best_any: dict | None = None
    # The best run of each (strategy, tune_depth) of the backbone, in grid order: {strategy,
    # tune_depth (None for features heads), run, val_accuracy, strategy_best (the best of its
    # strategy over every depth)}; the cross-run CKA figure draws one line each, the corruption
    # figure one per strategy_best run (convscope.analysis.grid.by_strategy).
    by_strategy: list[dict] = field(default_factory=list)

    def fields(self) -> dict:
        return dataclasses.asdict(self)


def write_best(path, best: dict[str, BestRun]) -> None:
    """best.json: {backbone: {"run": id, "strategy", "val_accuracy", ...}}."""
    atomic.write_json(path, {b: choice.fields() for b, choice in best.items()}, indent=1)


def read_best(path) -> dict[str, BestRun]:
    """best.json as {backbone: BestRun}; raises ValueError naming the file when it has another shape."""
    path = Path(path)
    raw = json.loads(Path(path).read_text())
    names = {f.name for f in dataclasses.fields(BestRun)}
    # Fields with a default may be absent (a best.json written before they existed).
    required = {
        f.name
        for f in dataclasses.fields(BestRun)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    if not isinstance(raw, dict) or not all(isinstance(v, dict) and required <= set(v) <= names for v in raw.values()):
        raise ValueError(
            f"{path}: expected {{backbone: {{{', '.join(sorted(names))}}}}} as the grid summary writes it; "
            "re-run the summarise rule"
        )
    return {b: BestRun(**v) for b, v in raw.items()}


# ---- analysis records the report's findings read (layout.AnalysisFolder.records) -------
@dataclass(frozen=True)
class AnalysisRecord:
    """One JSON record of an analysis folder that another stage reads by name.

    The analyse job writes every record (`write`, or `not_run` when its analysis was off or
    had nothing to work on), so the rule declares them as outputs; readers get the dict, or
    None for a record of an analysis that did not run.
    """

    name: str  # the key in layout.AnalysisFolder.records
    required: tuple[str, ...]  # keys every reader may rely on

    def write(self, path, data: dict) -> None:
        missing = [k for k in self.required if k not in data]
        if missing:
            raise ValueError(f"{path}: the {self.name} record lacks {missing}")
        atomic.write_json(path, {"ran": True, **data}, indent=1)

    def not_run(self, path, reason: str) -> None:
        atomic.write_json(path, {"ran": False, "reason": reason}, indent=1)

    def read(self, path) -> dict | None:
        """The record (without "ran"); None when its analysis did not run; ValueError naming the file otherwise."""
        raw = _read_json(path, "the analyse rule for this run")
        if not isinstance(raw, dict) or "ran" not in raw:
            raise ValueError(f"{path}: not a {self.name} record as the analyse job writes it; re-run the analyse rule")
        if not raw["ran"]:
            return None
        missing = [k for k in self.required if k not in raw]
        if missing:
            raise ValueError(f"{path}: the {self.name} record lacks {missing}; re-run the analyse rule")
        return {k: v for k, v in raw.items() if k != "ran"}


# What the run's training left frozen (convscope.analysis.standard.frozen).
FROZEN = AnalysisRecord("frozen", ("strategy", "frozen_blocks", "trained_blocks", "statement", "blocks"))
# Temperature scaling on the validation split (convscope.stats.calibration.Calibration.summary).
CALIBRATION = AnalysisRecord("calibration", ("temperature", "ece_before", "ece_after"))
# The pointing game (convscope.analysis.trust.checks): per-method accuracy, chance, the centre baseline.
POINTING = AnalysisRecord("pointing", ("images", "methods", "chance", "centre_baseline"))
# Deletion curves' areas per method, "random" included (convscope.analysis.trust.checks).
DELETION = AnalysisRecord("deletion", ("images", "steps", "auc"))
# The randomisation sanity check's verdict per method (convscope.analysis.trust.sanity).
SANITY = AnalysisRecord("sanity", ("threshold", "images", "stages", "methods"))
# Linear CKA per block against the starting weights (convscope.analysis.standard.cka).
CKA = AnalysisRecord("cka", ("statement", "start", "blocks"))
# Test accuracy under ImageNet-C corruptions (convscope.analysis.trust.corruptions).
CORRUPTIONS = AnalysisRecord("corruptions", ("statement", "strategy", "rows"))
# Share of the map mass in the image's outer ring per method and class (convscope.analysis.trust.border_mass).
BORDER_MASS = AnalysisRecord("border_mass", ("border", "threshold", "rows", "flagged", "statement"))
# One backbone's strategies side by side: the sentences of the CKA and corruption figures
# (convscope.analysis.grid.by_strategy; layout.ByStrategyFolder.record).
BY_STRATEGY = AnalysisRecord("by_strategy", ("backbone", "cka_statement", "corruptions_statement", "lines"))
ANALYSIS_RECORDS = {r.name: r for r in (FROZEN, CALIBRATION, POINTING, DELETION, SANITY, CKA, CORRUPTIONS, BORDER_MASS)}
