"""The best run of each (strategy, tune_depth) in the grid summary, and the corruption sentence that compares
strategies (convscope.analysis.grid.summary.best_per_depth, convscope.analysis.grid.by_strategy).

The figures and the probes behind them run on a real tiny grid in tests/test_workflow_analyse.py.
"""

from __future__ import annotations

import math

import pandas as pd

from convscope.analysis.grid.by_strategy import corruption_statement
from convscope.analysis.grid.summary import best_per_depth


def _runs(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["backbone", "run", "strategy", "tune_depth", "val_accuracy"])


def test_one_entry_per_strategy_and_depth_in_grid_order():
    table = _runs(
        [
            ("alexnet", "finetune-lr1e-3-do0.5-d1", "finetune", 1, 0.70),
            ("alexnet", "finetune-lr1e-4-do0.5-d1", "finetune", 1, 0.80),  # the better d1 run
            ("alexnet", "finetune-lr1e-3-do0.5-dall", "finetune", "all", 0.75),
            ("alexnet", "finetune-lr1e-4-do0.5-dall", "finetune", "all", 0.75),  # a tie: the first wins
            ("alexnet", "scratch-lr1e-3-do0.5", "scratch", "all", 0.50),
            ("alexnet", "features-logreg-C1", "features", math.nan, 0.85),
            ("alexnet", "features-linsvm-C1", "features", math.nan, 0.90),
            ("alexnet", "progressive-lr1e-3-do0.5-d1", "progressive", 1, math.nan),  # never validated: left out
        ]
    )
    got = best_per_depth(table)
    assert [(e["strategy"], e["tune_depth"], e["run"]) for e in got] == [
        ("finetune", 1, "finetune-lr1e-4-do0.5-d1"),
        ("finetune", "all", "finetune-lr1e-3-do0.5-dall"),
        ("scratch", "all", "scratch-lr1e-3-do0.5"),
        ("features", None, "features-linsvm-C1"),  # one entry per strategy: heads have no depth
    ]
    assert [e["val_accuracy"] for e in got] == [0.80, 0.75, 0.50, 0.90]
    # The best of each strategy over every depth: what the corruption figure draws.
    assert [e["strategy_best"] for e in got] == [True, False, True, True]


def test_seed_mean_picks_the_grid_point_with_the_best_mean_then_its_best_seed():
    table = _runs(
        [
            ("alexnet", "finetune-lr1e-3-do0.5-d2-s1", "finetune", 2, 0.90),
            ("alexnet", "finetune-lr1e-3-do0.5-d2-s2", "finetune", 2, 0.50),  # mean 0.70
            ("alexnet", "finetune-lr1e-4-do0.5-d2-s1", "finetune", 2, 0.80),
            ("alexnet", "finetune-lr1e-4-do0.5-d2-s2", "finetune", 2, 0.78),  # mean 0.79
        ]
    )
    assert [e["run"] for e in best_per_depth(table, "run")] == ["finetune-lr1e-3-do0.5-d2-s1"]
    assert [e["run"] for e in best_per_depth(table, "seed_mean")] == ["finetune-lr1e-4-do0.5-d2-s1"]


def _corruption_rows(accuracy: dict) -> pd.DataFrame:
    """accuracy: {(strategy, corruption): accuracy at severity 3}; clean 0.9 for every run."""
    rows = []
    for (strategy, name), acc in accuracy.items():
        for severity, value in ((0, 0.9), (3, acc)):
            rows.append({"strategy": strategy, "run": f"{strategy}-run", "strategy_best": True})
            rows[-1].update(corruption=name, severity=severity, accuracy=value)
    return pd.DataFrame(rows)


def test_the_sentence_compares_strategies_where_they_differ_most():
    table = _corruption_rows(
        {
            ("finetune", "gaussian_noise"): 0.81,
            ("scratch", "gaussian_noise"): 0.48,  # gap 0.33
            ("finetune", "contrast"): 0.61,
            ("scratch", "contrast"): 0.56,  # gap 0.05
        }
    )
    text = corruption_statement(table)
    assert text.startswith("At severity 3 of Gaussian noise, finetune keeps 0.81, scratch 0.48")
    # Averaged over both corruptions: finetune (0.71) above scratch (0.52).
    assert "finetune keeps the most (0.71)" in text and "scratch keeps the least (0.52)" in text
    # Means closer than TIE are named together: their order would flip with the seed.
    tied = corruption_statement(
        _corruption_rows(
            {
                ("finetune", "jpeg"): 0.70,
                ("progressive", "jpeg"): 0.705,
                ("scratch", "jpeg"): 0.40,
            }
        )
    )
    assert "finetune and progressive keep the most" in tied or "progressive and finetune keep the most" in tied, tied
    alone = corruption_statement(_corruption_rows({("features", "jpeg"): 0.7}))
    assert alone == "At severity 3 of JPEG, features keeps 0.70 (only features ran, nothing to compare with)."
