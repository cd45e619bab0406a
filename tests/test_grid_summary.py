"""Grid summary from metrics.json files written in the train stage's own layout.

Each run's validation/test predictions are constructed to reach a chosen accuracy,
then passed through convscope.training.metrics.val_section and test_section (what
the training and evaluate jobs write), so the summary reads exactly what a real
grid produces.
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
from convscope import grid, layout, records
from convscope.analysis.grid import paired
from convscope.analysis.grid.summary import Selection, summarise_grid, wilson_interval
from convscope.atomic import write_json
from convscope.layout import Results
from convscope.training import metrics as run_metrics

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
        train={
            "strategies": ["finetune", "scratch", "features"],
            "grid": {"learning_rate": [0.001, 0.0003], "dropout": [0.2, 0.5], "tune_depth": [1, "all"]},
            "features": {"classifiers": ["logreg"], "C": [0.1, 1.0]},
            **train,
        },
    )
    return cfg.load_and_validate(config)


def write_grid(root: Path, config: dict, accuracy) -> list[Path]:
    """metrics.json for every run of the grid; accuracy(run) -> (val, test)."""
    paths = []
    for i, run in enumerate(grid.runs(config)):
        val_acc, test_acc = accuracy(run)
        yv, sv = scores_for(val_acc, N_VAL, i)
        yt, st = scores_for(test_acc, N_TEST, 1000 + i)
        metrics = {
            "backbone": run.backbone,
            "run": run.id,
            "strategy": run.strategy,
            "hp": run.hp,
            "classes": CLASSES,
            **(fit := run_metrics.val_section((yv, sv), CLASSES, bootstrap=200, seed=1)),
            "test": run_metrics.test_section((yt, st), CLASSES, bootstrap=fit["bootstrap"]),
            "train_time_s": 10.0 + i,
            "images_per_s": 100.0 + i,
            "seed": 7,
        }
        path = Results(root).metrics(run.backbone, run.id)
        write_json(path, metrics)
        records.write_predictions(path.parent / layout.PREDICTIONS, yt, st)
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
    out = Results(tmp_path).grid_dir
    summarise_grid(files, out)
    return {"config": config, "out": out, "files": files, "results": Results(tmp_path)}


def test_runs_table_has_every_run_with_cis(summary):
    runs = pd.read_csv(summary["results"].runs_csv)
    expected = grid.runs(summary["config"])
    assert list(zip(runs["backbone"], runs["run"])) == [(r.backbone, r.id) for r in expected]
    for col in (
        "strategy",
        "learning_rate",
        "dropout",
        "tune_depth",
        "C",
        "val_accuracy",
        "val_ci95_low",
        "val_ci95_high",
        "test_accuracy",
        "test_ci95_low",
        "test_ci95_high",
        "train_time_s",
        "images_per_s",
    ):
        assert col in runs.columns, col
    for r in expected:
        row = runs[(runs["backbone"] == r.backbone) & (runs["run"] == r.id)].iloc[0]
        val, _ = accuracy_by_rule(r)
        assert row["val_accuracy"] == pytest.approx(val)
        assert row["val_ci95_low"] <= row["val_accuracy"] <= row["val_ci95_high"]
        assert row["test_ci95_low"] <= row["test_accuracy"] <= row["test_ci95_high"]
        metrics = json.loads(summary["results"].metrics(r.backbone, r.id).read_text())
        assert [row["test_ci95_low"], row["test_ci95_high"]] == pytest.approx(metrics["test"]["accuracy_ci95"])


def test_wilson_interval_matches_the_textbook_value():
    # 50/100: p = 0.5, z = 1.96 -> 0.5 +- 0.0962 (Wilson), about [0.404, 0.596].
    lo, hi = wilson_interval(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    lo, hi = wilson_interval(1.0, 20)  # never above 1, and not degenerate at the edge
    assert hi == 1.0 and 0.8 < lo < 0.9
    assert all(math.isnan(v) for v in wilson_interval(0.5, 0))


def test_best_run_is_the_max_validation_accuracy(summary):
    best = json.loads(summary["results"].best_json.read_text())
    runs = pd.read_csv(summary["results"].runs_csv)
    assert set(best) == {"alexnet", "mobilenetv2"}
    for backbone, entry in best.items():
        mine = runs[runs["backbone"] == backbone]
        trained = mine[mine["strategy"] != "features"]
        assert entry["val_accuracy"] == pytest.approx(trained["val_accuracy"].max())
        assert entry["run"] in set(trained.loc[trained["val_accuracy"] == trained["val_accuracy"].max(), "run"])
        assert entry["best_any"]["val_accuracy"] == pytest.approx(mine["val_accuracy"].max())
        assert entry["runs"] == len(mine)
    assert best["alexnet"]["run"] == "finetune-lr1e-3-do0.5-dall"


def test_ties_go_to_the_first_run_in_grid_order(tmp_path):
    config = make_config(["mobilenetv2"], grid={"learning_rate": [0.001, 0.0003]})
    files = write_grid(tmp_path, config, lambda run: (0.75, 0.5 if run.strategy != "scratch" else 0.9))
    summarise_grid(files, tmp_path / "out")
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    first = grid.runs(config, "mobilenetv2")[0].id
    assert best["mobilenetv2"]["run"] == first  # test accuracy (higher for scratch) never decides


def test_the_best_trained_run_is_analysed_even_when_a_features_head_scores_higher(tmp_path):
    config = make_config(["alexnet"], grid={"learning_rate": [0.001]})
    val = {"features-logreg-C1": 0.9, "scratch-lr1e-3-do0.5": 0.7}
    files = write_grid(tmp_path, config, lambda run: (val.get(run.id, 0.5), 0.5))
    summarise_grid(files, tmp_path / "out")
    best = json.loads((tmp_path / "out" / "best.json").read_text())["alexnet"]
    assert best["run"] == "scratch-lr1e-3-do0.5" and best["strategy"] == "scratch"
    assert best["chosen_as"].startswith("best trained run")
    # The features head is still the best overall and the best features run, side by side.
    assert best["best_any"]["run"] == best["best_features"]["run"] == "features-logreg-C1"
    assert best["best_trained"]["run"] == best["run"]
    # config analysis.runs: best_any analyses it instead.
    summarise_grid(files, tmp_path / "any", selection=Selection(analysed="best_any"))
    best = json.loads((tmp_path / "any" / "best.json").read_text())["alexnet"]
    assert best["run"] == "features-logreg-C1" and best["strategy"] == "features"


def test_a_grid_of_features_heads_only_analyses_its_best_head(tmp_path):
    config = make_config(["alexnet"], strategies=["features"])
    files = write_grid(tmp_path, config, lambda run: (0.8 if run.id == "features-logreg-C0.1" else 0.6, 0.5))
    summarise_grid(files, tmp_path / "out")
    best = json.loads((tmp_path / "out" / "best.json").read_text())["alexnet"]
    assert best["run"] == "features-logreg-C0.1" and best["best_trained"] is None
    assert "no trained runs" in best["chosen_as"]


def test_heatmap_cells_are_mean_val_accuracy_of_their_runs(summary):
    runs = pd.read_csv(summary["results"].runs_csv, dtype={"tune_depth": str})
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
    runs = pd.read_csv(summary["results"].runs_csv)
    assert set(zip(comp["backbone"], comp["strategy"])) == {
        (b, s) for b in ("alexnet", "mobilenetv2") for s in ("finetune", "scratch", "features")
    }
    for c in comp.itertuples():
        mine = runs[(runs["backbone"] == c.backbone) & (runs["strategy"] == c.strategy)]
        assert c.best_val_accuracy == pytest.approx(mine["val_accuracy"].max())
        assert c.mean_val_accuracy == pytest.approx(mine["val_accuracy"].mean())
        assert c.runs == len(mine)
    index = json.loads((summary["out"] / layout.INDEX).read_text())
    ids = [s["id"] for s in index["sections"]]
    assert ids == ["runs", "heatmaps", "strategies"]
    files = [it["file"] for s in index["sections"] for it in s["items"]]
    assert "runs.csv" in files and "best.json" in files and "strategies.png" in files
    assert all((summary["out"] / f).is_file() for f in files)


def test_single_run_grid_has_no_heatmaps_but_still_a_summary(tmp_path):
    config = make_config(["alexnet"], strategies=["finetune"], grid={"learning_rate": [0.001]})
    files = write_grid(tmp_path, config, lambda run: (0.5, 0.5))
    summarise_grid(files, tmp_path / "out")
    index = json.loads((tmp_path / "out" / layout.INDEX).read_text())
    assert [s["id"] for s in index["sections"]] == ["runs", "strategies"]
    assert pd.read_csv(tmp_path / "out" / "heatmaps.csv").empty


def test_metrics_without_the_train_layout_are_refused(tmp_path):
    bad = Results(tmp_path).metrics("alexnet", "x")
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(ValueError, match=r"metrics.json: lacks \['backbone', 'run', 'strategy', 'val', 'test'\]"):
        summarise_grid([bad], tmp_path / "out")


# ---- seeds, paired comparisons, calibration error in the runs table ------------------


def test_runs_differing_only_by_seed_are_aggregated_and_can_pick_the_best_mean(
    tmp_path,
):
    config = make_config(
        ["alexnet"],
        strategies=["finetune"],
        grid={"learning_rate": [0.001, 0.0003], "seed": [1, 2, 3]},
    )
    # lr 1e-3 has the single best seed (0.9) but the lower mean; lr 3e-4 is steadier and better on average.
    val = {
        (0.001, 1): 0.9,
        (0.001, 2): 0.4,
        (0.001, 3): 0.5,
        (0.0003, 1): 0.7,
        (0.0003, 2): 0.75,
        (0.0003, 3): 0.8,
    }
    files = write_grid(
        tmp_path,
        config,
        lambda run: (val[(run.hp["learning_rate"], run.hp["seed"])], 0.5),
    )
    summarise_grid(files, tmp_path / "out")
    seeds = pd.read_csv(tmp_path / "out" / "seeds.csv").set_index("config")
    assert set(seeds.index) == {"finetune-lr1e-3-do0.5-d2", "finetune-lr3e-4-do0.5-d2"}
    steady = seeds.loc["finetune-lr3e-4-do0.5-d2"]
    assert steady["seeds"] == 3
    assert steady["val_accuracy_mean"] == pytest.approx(0.75)
    assert steady["val_accuracy_sd"] == pytest.approx(np.std([0.7, 0.75, 0.8], ddof=1))
    assert (steady["val_accuracy_min"], steady["val_accuracy_max"]) == (
        pytest.approx(0.7),
        pytest.approx(0.8),
    )
    index = json.loads((tmp_path / "out" / layout.INDEX).read_text())
    assert "seeds" in [s["id"] for s in index["sections"]]
    best = json.loads((tmp_path / "out" / "best.json").read_text())["alexnet"]
    assert best["run"] == "finetune-lr1e-3-do0.5-d2-s1" and best["seeds"] == 3  # by the run's own accuracy
    summarise_grid(files, tmp_path / "mean", selection=Selection(by="seed_mean"))
    best = json.loads((tmp_path / "mean" / "best.json").read_text())["alexnet"]
    assert best["run"] == "finetune-lr3e-4-do0.5-d2-s3"  # the best seed of the best mean
    assert best["val_accuracy_seed_mean"] == pytest.approx(0.75) and "over seeds" in best["chosen_as"]
    strategies = pd.read_csv(tmp_path / "mean" / "strategies.csv")
    assert strategies.loc[0, "best_run"] == best["run"]


@pytest.mark.parametrize(
    "a_only, b_only, expected",
    [
        (
            10,
            0,
            2 * 0.5**10,
        ),  # every disagreement favours A: 2 x P(X = 0), X ~ Bin(10, 1/2)
        (
            5,
            3,
            186 / 256,
        ),  # P(X <= 3) + P(X >= 5) for n = 8: 2 x (1 + 8 + 28 + 56) / 256
        (3, 5, 186 / 256),  # symmetric
        (4, 4, 1.0),
        (0, 0, 1.0),  # no disagreement, no evidence
        (1, 0, 1.0),  # two-sided: P(X = 0 or X = 1) of Bin(1, 1/2)
        (12, 2, 2 * (1 + 14 + 91) / 2**14),  # 2 x P(X <= 2), n = 14
    ],
)
def test_mcnemar_exact_p_values_on_constructed_tables(a_only, b_only, expected):
    assert paired.mcnemar_exact(a_only, b_only) == pytest.approx(expected, rel=1e-12)
    # The same through the per-image path: a table with these discordant cells and 20 concordant images.
    correct_a = [True] * a_only + [False] * b_only + [True] * 15 + [False] * 5
    correct_b = [False] * a_only + [True] * b_only + [True] * 15 + [False] * 5
    result = paired.compare(paired.Arm("A", 0.6, (0.5, 0.7), correct_a), paired.Arm("B", 0.5, (0.4, 0.6), correct_b))
    assert (
        result["a_only_right"],
        result["b_only_right"],
        result["both_right"],
        result["both_wrong"],
    ) == (a_only, b_only, 15, 5)
    assert result["p_value"] == pytest.approx(expected, rel=1e-12)
    assert result["significant"] == (expected < 0.05) and result["ci_overlap"] is True
    assert "McNemar exact p" in result["statement"] and "their 95% CIs overlap" in result["statement"]


def test_strategy_comparison_tests_the_best_runs_on_the_same_images(tmp_path):
    config = make_config(["alexnet"], grid={"learning_rate": [0.001]})
    # finetune 36/40 right on test, scratch 20/40, features 22/40.
    test = {"finetune": 0.9, "scratch": 0.5, "features": 0.55}
    files = write_grid(
        tmp_path,
        config,
        lambda run: (0.6 + (run.strategy == "finetune") * 0.2, test[run.strategy]),
    )
    summarise_grid(files, tmp_path / "out")
    comp = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    strategies = pd.read_csv(tmp_path / "out" / "strategies.csv").set_index("strategy")
    assert set(zip(comp["strategy_a"], comp["strategy_b"])) == {
        ("finetune", "scratch"),
        ("finetune", "features"),
        ("scratch", "features"),
    }
    for c in comp.itertuples():
        ya, pa = _read(tmp_path, c.run_a)
        yb, pb = _read(tmp_path, c.run_b)
        a, b = pa == ya, pb == yb
        assert (c.a_only_right, c.b_only_right) == ((a & ~b).sum(), (~a & b).sum())
        assert c.p_value == pytest.approx(paired.mcnemar_exact(c.a_only_right, c.b_only_right))
        assert c.run_a == strategies.loc[c.strategy_a, "best_run"]
        lo_a, hi_a = strategies.loc[c.strategy_a, ["test_ci95_low", "test_ci95_high"]]
        lo_b, hi_b = strategies.loc[c.strategy_b, ["test_ci95_low", "test_ci95_high"]]
        assert c.ci_overlap == (lo_a <= hi_b and lo_b <= hi_a)
    ft = comp[(comp["strategy_a"] == "finetune") & (comp["strategy_b"] == "scratch")].iloc[0]
    assert ft.significant and ft.p_value < 0.01 and ft.statement.startswith("finetune scores higher than scratch")


def _read(root, run):
    return records.read_predictions(Results(root).test_predictions("alexnet", run))


def test_the_runs_table_carries_each_runs_test_calibration_error(summary):
    runs = pd.read_csv(summary["results"].runs_csv)
    # Every constructed test prediction has top probability 0.7 (rows sum to 1), so ECE = |accuracy - 0.7|.
    assert runs["test_ece"].to_numpy() == pytest.approx((runs["test_accuracy"] - 0.7).abs().to_numpy())
