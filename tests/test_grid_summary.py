"""Grid summary from metrics.json files written in the train stage's own layout.

Each run's validation/test predictions are constructed to reach a chosen accuracy,
then passed through convscope.training.metrics.split_report (what training
writes), so the summary reads exactly what a real grid produces.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_config
from convscope import config as cfg
from convscope import grid
from convscope.analysis.grid_summary import summarise_grid, wilson_interval
from convscope.atomic import write_json
from convscope.training.metrics import split_report

CLASSES = ["circle", "square", "triangle", "star"]
N_VAL, N_TEST = 40, 40


def scores_for(accuracy: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and one-hot-ish scores with exactly round(accuracy * n) correct."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(CLASSES)
    pred = y.copy()
    wrong = rng.choice(n, n - round(accuracy * n), replace=False)
    pred[wrong] = (y[wrong] + 1) % len(CLASSES)
    scores = np.full((n, len(CLASSES)), 0.1)
    scores[np.arange(n), pred] = 0.7
    return y, scores


def make_config(backbones=("alexnet", "mobilenetv2"), **train) -> dict:
    config = tiny_config(
        classes=CLASSES,
        backbones={b: {"input_size": 64} for b in backbones},
        train={"strategies": ["finetune", "scratch", "features"],
               "grid": {"learning_rate": [0.001, 0.0003], "dropout": [0.2, 0.5], "tune_depth": [1, "all"]},
               "features": {"classifiers": ["logreg"], "C": [0.1, 1.0]}, **train},
    )
    return cfg.load_and_validate(config)


def write_grid(root: Path, config: dict, accuracy) -> list[Path]:
    """metrics.json for every run of the grid; accuracy(run) -> (val, test)."""
    paths = []
    for i, run in enumerate(grid.runs(config)):
        val_acc, test_acc = accuracy(run)
        yv, sv = scores_for(val_acc, N_VAL, i)
        yt, st = scores_for(test_acc, N_TEST, 1000 + i)
        metrics = {"backbone": run.backbone, "run": run.id, "strategy": run.strategy, "hp": run.hp,
                   "classes": CLASSES, **split_report(yv, sv, yt, st, CLASSES, bootstrap=200, seed=1),
                   "train_time_s": 10.0 + i, "images_per_s": 100.0 + i, "seed": 7}
        path = root / "models" / run.backbone / run.id / "metrics.json"
        write_json(path, metrics)
        paths.append(path)
    return paths


def accuracy_by_rule(run) -> tuple[float, float]:
    """Deterministic, distinct-ish accuracies that depend on the hyperparameters."""
    hp = run.hp
    if run.strategy == "features":
        return (0.5 if hp["C"] == 0.1 else 0.6), 0.55
    bonus = {"finetune": 0.3, "scratch": 0.1}[run.strategy]
    val = bonus + (0.2 if hp["learning_rate"] == 0.001 else 0.1) + (0.1 if hp["dropout"] == 0.5 else 0.0)
    val += 0.05 if hp["tune_depth"] == "all" else 0.0
    if run.backbone == "mobilenetv2":
        val -= 0.1
    return round(val * N_VAL) / N_VAL, 0.5


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("grid")
    config = make_config()
    files = write_grid(tmp_path, config, accuracy_by_rule)
    out = tmp_path / "analysis" / "grid"
    summarise_grid(files, out)
    return {"config": config, "out": out, "files": files}


def test_runs_table_has_every_run_with_cis(summary):
    runs = pd.read_csv(summary["out"] / "runs.csv")
    expected = grid.runs(summary["config"])
    assert list(zip(runs["backbone"], runs["run"])) == [(r.backbone, r.id) for r in expected]
    for col in ("strategy", "learning_rate", "dropout", "tune_depth", "C", "val_accuracy", "val_ci95_low",
                "val_ci95_high", "test_accuracy", "test_ci95_low", "test_ci95_high", "train_time_s", "images_per_s"):
        assert col in runs.columns, col
    for r in expected:
        row = runs[(runs["backbone"] == r.backbone) & (runs["run"] == r.id)].iloc[0]
        val, _ = accuracy_by_rule(r)
        assert row["val_accuracy"] == pytest.approx(val)
        assert row["val_ci95_low"] <= row["val_accuracy"] <= row["val_ci95_high"]
        assert row["test_ci95_low"] <= row["test_accuracy"] <= row["test_ci95_high"]
        metrics = json.loads((summary["out"].parent.parent / "models" / r.backbone / r.id / "metrics.json").read_text())
        assert [row["test_ci95_low"], row["test_ci95_high"]] == pytest.approx(metrics["test"]["accuracy_ci95"])


def test_wilson_interval_matches_the_textbook_value():
    # 50/100: p = 0.5, z = 1.96 -> 0.5 +- 0.0962 (Wilson), about [0.404, 0.596].
    lo, hi = wilson_interval(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    lo, hi = wilson_interval(1.0, 20)  # never above 1, and not degenerate at the edge
    assert hi == 1.0 and 0.8 < lo < 0.9
    assert all(math.isnan(v) for v in wilson_interval(0.5, 0))


def test_best_run_is_the_max_validation_accuracy(summary):
    best = json.loads((summary["out"] / "best.json").read_text())
    runs = pd.read_csv(summary["out"] / "runs.csv")
    assert set(best) == {"alexnet", "mobilenetv2"}
    for backbone, entry in best.items():
        mine = runs[runs["backbone"] == backbone]
        assert entry["val_accuracy"] == pytest.approx(mine["val_accuracy"].max())
        assert entry["run"] in set(mine.loc[mine["val_accuracy"] == mine["val_accuracy"].max(), "run"])
        assert entry["runs"] == len(mine)
    assert best["alexnet"]["run"] == "finetune-lr1e-3-do0.5-dall"


def test_ties_go_to_the_first_run_in_grid_order(tmp_path):
    config = make_config(["mobilenetv2"], grid={"learning_rate": [0.001, 0.0003]})
    files = write_grid(tmp_path, config, lambda run: (0.75, 0.5 if run.strategy != "scratch" else 0.9))
    summarise_grid(files, tmp_path / "out")
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    first = grid.runs(config, "mobilenetv2")[0].id
    assert best["mobilenetv2"]["run"] == first  # test accuracy (higher for scratch) never decides


def test_a_features_head_can_be_the_best_run(tmp_path):
    config = make_config(["alexnet"], grid={"learning_rate": [0.001]})
    files = write_grid(tmp_path, config, lambda run: (0.9 if run.id == "features-logreg-C1" else 0.5, 0.5))
    summarise_grid(files, tmp_path / "out")
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["alexnet"]["run"] == "features-logreg-C1" and best["alexnet"]["strategy"] == "features"


def test_heatmap_cells_are_mean_val_accuracy_of_their_runs(summary):
    runs = pd.read_csv(summary["out"] / "runs.csv", dtype={"tune_depth": str})
    cells = pd.read_csv(summary["out"] / "heatmaps.csv", dtype={"y_value": str, "x_value": str})
    assert not cells.empty
    pairs = set(zip(cells["backbone"], cells["y_key"], cells["x_key"]))
    # Every pair of varying hyperparameters (strategy counts as one) has a heatmap.
    assert ("alexnet", "learning_rate", "dropout") in pairs
    assert ("alexnet", "strategy", "learning_rate") in pairs
    assert ("alexnet", "dropout", "tune_depth") in pairs
    # C exists for features heads only: against strategy it would be a single row.
    assert ("alexnet", "strategy", "C") not in pairs

    def label(v):
        return grid.fmt(v) if not isinstance(v, str) else v

    for c in cells.itertuples():
        mine = runs[runs["backbone"] == c.backbone]
        sel = mine[c.y_key].map(label) == c.y_value
        sel &= mine[c.x_key].map(label) == c.x_value
        assert c.runs == sel.sum() > 0
        assert c.mean_val_accuracy == pytest.approx(mine.loc[sel, "val_accuracy"].mean())
        assert (summary["out"] / c.file).is_file()


def test_strategy_comparison_and_index(summary):
    comp = pd.read_csv(summary["out"] / "strategies.csv")
    runs = pd.read_csv(summary["out"] / "runs.csv")
    assert set(zip(comp["backbone"], comp["strategy"])) == {
        (b, s) for b in ("alexnet", "mobilenetv2") for s in ("finetune", "scratch", "features")
    }
    for c in comp.itertuples():
        mine = runs[(runs["backbone"] == c.backbone) & (runs["strategy"] == c.strategy)]
        assert c.best_val_accuracy == pytest.approx(mine["val_accuracy"].max())
        assert c.mean_val_accuracy == pytest.approx(mine["val_accuracy"].mean())
        assert c.runs == len(mine)
    index = json.loads((summary["out"] / "index.json").read_text())
    ids = [s["id"] for s in index["sections"]]
    assert ids == ["runs", "heatmaps", "strategies"]
    files = [it["file"] for s in index["sections"] for it in s["items"]]
    assert "runs.csv" in files and "best.json" in files and "strategies.png" in files
    assert all((summary["out"] / f).is_file() for f in files)


def test_single_run_grid_has_no_heatmaps_but_still_a_summary(tmp_path):
    config = make_config(["alexnet"], strategies=["finetune"], grid={"learning_rate": [0.001]})
    files = write_grid(tmp_path, config, lambda run: (0.5, 0.5))
    summarise_grid(files, tmp_path / "out")
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [s["id"] for s in index["sections"]] == ["runs", "strategies"]
    assert pd.read_csv(tmp_path / "out" / "heatmaps.csv").empty


def test_metrics_without_the_train_layout_are_refused(tmp_path):
    bad = tmp_path / "models" / "alexnet" / "x" / "metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(ValueError, match=r"metrics.json lacks \['backbone', 'run', 'strategy', 'val', 'test'\]"):
        summarise_grid([bad], tmp_path / "out")
