"""What stages hand each other: one writer and one reader per record.

- RunMetrics: a run's metrics.json (trained runs and features heads alike), read by
  the grid summary, the analyses and the report.
- BestRun: one backbone's entry of best.json (the grid summary's choice), read by
  rules/common.smk and the report.
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
    def from_dict(cls, raw: dict, where) -> RunMetrics:
        """From metrics.json's layout; ValueError naming `where` when a field every run has is missing."""
        missing = [k for k in REQUIRED if k not in raw]
        if missing:
            raise ValueError(
                f"{where}: metrics.json lacks {missing}; it was written by an older train stage, re-run it"
            )
        known = {k: raw[k] for k in _FIELDS if k in raw}
        return cls(**known, extra={k: v for k, v in raw.items() if k not in _FIELDS})

    def to_json(self) -> dict:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**fields, **self.extra}


_FIELDS = tuple(f.name for f in dataclasses.fields(RunMetrics) if f.name != "extra")
REQUIRED = ("backbone", "run", "strategy", "val", "test")


def write_metrics(path, m: RunMetrics) -> None:
    """metrics.json, atomically: the run's "complete" mark, so written last."""
    atomic.write_json(path, m.to_json())


def read_metrics(path) -> RunMetrics:
    """A run's metrics.json; raises ValueError naming the file and what to re-run."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable metrics ({e}); re-run the training job of this run") from e
    return RunMetrics.from_dict(raw, path)


# ---- the best run per backbone (analysis/grid/best.json) ------------------------
@dataclass(frozen=True)
class BestRun:
    """The grid summary's choice for one backbone: the best run by validation accuracy."""

    run: str
    strategy: str
    val_accuracy: float
    test_accuracy: float
    test_ci95_low: float
    test_ci95_high: float
    runs: int  # runs of this backbone with a validation accuracy

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
    if not isinstance(raw, dict) or not all(isinstance(v, dict) and set(v) == names for v in raw.values()):
        raise ValueError(
            f"{path}: expected {{backbone: {{{', '.join(sorted(names))}}}}} as the grid summary writes it; "
            "re-run the summarise rule"
        )
    return {b: BestRun(**v) for b, v in raw.items()}
