"""The grid summary: every run side by side, the best run per backbone.

Reads the metrics.json of every run (convscope.training.metrics layout: backbone,
run, strategy, hp, val/test accuracy, test CI, train time, images/s) and writes

    runs.csv         one row per run: strategy, hyperparameters, val accuracy with a
                     Wilson 95% CI, test accuracy with the bootstrap 95% CI, test
                     ECE, train time, images/s
    seeds.csv        runs that differ only by seed, aggregated: seeds, mean and
                     standard deviation of val and test accuracy
    best.json        per backbone: "run" = the run analysed in detail (the best
                     *trained* run by default: a features head on a frozen base
                     shows filters it never learned), plus "best_trained",
                     "best_features" and "best_any" for the comparison, and
                     "by_strategy": the best run of each (strategy, tune_depth)
    heatmaps.csv     mean validation accuracy per cell, over each pair of
                     hyperparameters that vary for a backbone (+ one PNG per pair)
    strategies.csv   best and mean validation accuracy per strategy per backbone (+ PNG)
    comparisons.csv  the best runs of every two strategies on the same test images:
                     disagreement table, McNemar's exact p, CI overlap, one sentence
    index.json       for the report

"Best" is by validation accuracy, or by its mean over seeds (Selection.by =
"seed_mean": the grid point with the best mean, then its best seed). Ties go to
the run listed first (grid order): test accuracy never decides which run is
"best", or it would stop being a held-out estimate.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from convscope import atomic, grid, layout, records
from convscope.analysis import plots
from convscope.analysis.grid import paired
from convscope.analysis.index import item, section, write_index

log = logging.getLogger(__name__)

NUMBERS = (
    "val_accuracy",
    "val_ci95_low",
    "val_ci95_high",
    "test_accuracy",
    "test_ci95_low",
    "test_ci95_high",
    "test_ece",
    "train_time_s",
    "images_per_s",
)
ANALYSED = ("best", "best_any")  # config analysis.runs (`all` analyses every run; the report shows `best`)
BY = ("run", "seed_mean")  # config analysis.best_by


@dataclass(frozen=True)
class Selection:
    """How each backbone's best run is chosen (config analysis.runs and analysis.best_by)."""

    analysed: str = "best"  # best = best trained run (features only if none trained), best_any = any strategy
    by: str = "run"  # run = its own val accuracy, seed_mean = mean val accuracy over its seeds

    def __post_init__(self):
        if self.analysed not in ANALYSED:
            raise ValueError(f"config key analysis.runs: {self.analysed!r} is not one of {[*ANALYSED, 'all']}")
        if self.by not in BY:
            raise ValueError(f"config key analysis.best_by: {self.by!r} is not one of {list(BY)}")


def wilson_interval(accuracy: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound at 0 or 1 and for small n)."""
    if not n or accuracy is None or not math.isfinite(accuracy):
        return float("nan"), float("nan")
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def read_run(path) -> dict:
    """One runs.csv row from one metrics.json."""
    m = records.read_metrics(path)
    val, test = m.val, m.test
    val_lo, val_hi = wilson_interval(_number(val.get("accuracy")), int(val.get("n") or 0))
    ci = test.get("accuracy_ci95") or [float("nan"), float("nan")]
    row = {"backbone": m.backbone, "run": m.run, "strategy": m.strategy}
    row.update(m.hp)
    row.update(
        {
            "val_accuracy": _number(val.get("accuracy")),
            "val_ci95_low": val_lo,
            "val_ci95_high": val_hi,
            "val_n": int(val.get("n") or 0),
            "test_accuracy": _number(test.get("accuracy")),
            "test_ci95_low": _number(ci[0]),
            "test_ci95_high": _number(ci[1]),
            "test_n": int(test.get("n") or 0),
            "test_ece": _number(test.get("ece")),
            "train_time_s": _number(m.train_time_s),
            "images_per_s": _number(m.images_per_s),
        }
    )
    return row


def runs_table(metric_files) -> pd.DataFrame:
    rows = [read_run(p) for p in metric_files]
    if not rows:
        raise ValueError("the grid has no runs to summarise (config keys train.strategies, train.grid)")
    table = pd.DataFrame(rows)
    hp_cols = [c for c in table.columns if c not in ("backbone", "run", "strategy", "val_n", "test_n", *NUMBERS)]
    return table[["backbone", "run", "strategy", *hp_cols, *NUMBERS, "val_n", "test_n"]]


def hp_columns(table: pd.DataFrame) -> list[str]:
    fixed = {"backbone", "run", "val_n", "test_n", *NUMBERS}
    return [c for c in table.columns if c not in fixed]


def seed_groups(table: pd.DataFrame) -> pd.DataFrame:
    """Runs that differ only by seed, one row per grid point: seeds, mean and spread of the accuracies."""
    keyed = table.assign(config=table["run"].map(grid.without_seed))
    rows = []
    for (backbone, config), runs in keyed.groupby(["backbone", "config"], sort=False):
        row = {
            "backbone": backbone,
            "config": config,
            "strategy": runs["strategy"].iloc[0],
            "seeds": len(runs),
            "runs": " ".join(runs["run"]),
        }
        for metric in ("val_accuracy", "test_accuracy"):
            values = runs[metric].dropna()
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else float("nan")
            # Sample standard deviation: the spread a new seed would show (NaN with one seed).
            row[f"{metric}_sd"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            row[f"{metric}_min"] = float(values.min()) if len(values) else float("nan")
            row[f"{metric}_max"] = float(values.max()) if len(values) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _top(runs: pd.DataFrame, by: str) -> pd.Series:
    """The best of these runs: max val accuracy, or the best seed of the grid point with the best mean."""
    runs = runs[runs["val_accuracy"].notna()]
    if by == "seed_mean":
        config = runs["run"].map(grid.without_seed)
        means = runs.groupby(config, sort=False)["val_accuracy"].mean()
        runs = runs[config == means.idxmax()]  # idxmax: the first of equal maxima, in grid order
    return runs.loc[runs["val_accuracy"].idxmax()]


def _entry(top: pd.Series, runs: pd.DataFrame) -> dict:
    config = grid.without_seed(top["run"])
    seeds = runs[runs["run"].map(grid.without_seed) == config]
    return {
        "run": top["run"],
        "strategy": top["strategy"],
        "val_accuracy": float(top["val_accuracy"]),
        "test_accuracy": float(top["test_accuracy"]),
        "test_ci95_low": float(top["test_ci95_low"]),
        "test_ci95_high": float(top["test_ci95_high"]),
        "test_ece": float(top["test_ece"]) if pd.notna(top.get("test_ece")) else None,
        "seeds": len(seeds),
        "val_accuracy_seed_mean": float(seeds["val_accuracy"].mean()),
    }


def _depth(value):
    """A tune_depth cell as the grid wrote it: an int, "all", or None (features heads have none)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = grid.fmt(value.item() if isinstance(value, np.generic) else value)
    return int(text) if text.isdigit() else text


def best_per_depth(runs: pd.DataFrame, by: str = "run") -> list[dict]:
    """One backbone's best run of each (strategy, tune_depth), in grid order (`_top` picks each).

    Features heads have no tune_depth: one entry per strategy for them. `strategy_best` marks
    the best run of its strategy over every depth (the strategy comparison's pick).
    """
    runs = runs[runs["val_accuracy"].notna()]
    strategy_best = {_top(sub, by)["run"] for _, sub in runs.groupby("strategy", sort=False)}
    depths = [_depth(v) for v in (runs["tune_depth"] if "tune_depth" in runs else [None] * len(runs))]
    keys = pd.Series([f"{s} {d}" for s, d in zip(runs["strategy"], depths)], index=runs.index)
    out = []
    for key in dict.fromkeys(keys):
        top = _top(runs[keys == key], by)
        out.append(
            {
                "strategy": top["strategy"],
                "tune_depth": _depth(top.get("tune_depth")),
                "run": top["run"],
                "val_accuracy": float(top["val_accuracy"]),
                "strategy_best": top["run"] in strategy_best,
            }
        )
    return out


def best_runs(table: pd.DataFrame, selection: Selection = Selection()) -> dict[str, records.BestRun]:
    """Per backbone: the run to analyse ("run", ...) and the best trained, features and overall runs."""
    best = {}
    for backbone, runs in table.groupby("backbone", sort=False):
        runs = runs[runs["val_accuracy"].notna()]
        if runs.empty:
            raise ValueError(f"backbone {backbone}: no run has a validation accuracy; check its metrics.json files")
        trained = runs[runs["strategy"] != "features"]
        features = runs[runs["strategy"] == "features"]
        picks = {
            "best_any": _entry(_top(runs, selection.by), runs),
            "best_trained": _entry(_top(trained, selection.by), runs) if len(trained) else None,
            "best_features": _entry(_top(features, selection.by), runs) if len(features) else None,
        }
        if selection.analysed == "best" and picks["best_trained"] is not None:
            chosen, why = picks["best_trained"], "best trained run"
        else:
            chosen = picks["best_any"]
            why = "best run of any strategy" if selection.analysed == "best_any" else "best run (no trained runs)"
        by = "mean validation accuracy over seeds" if selection.by == "seed_mean" else "validation accuracy"
        best[backbone] = records.BestRun(
            **chosen,
            runs=len(runs),
            chosen_as=f"{why}, by {by}",
            **picks,
            by_strategy=best_per_depth(runs, selection.by),
        )
    return best


def _sort_key(value):
    """Numbers in numeric order, then words ('all' after the depths)."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def _label(value) -> str:
    from convscope.grid import fmt

    return fmt(value)


def heatmap_cells(runs: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Mean val accuracy and run count for every (a, b) value pair that has runs."""
    sub = runs[runs[a].notna() & runs[b].notna() & runs["val_accuracy"].notna()]
    if sub.empty:
        return pd.DataFrame(columns=["y_value", "x_value", "mean_val_accuracy", "runs"])
    keyed = sub.assign(_a=sub[a].map(_label), _b=sub[b].map(_label))
    cells = keyed.groupby(["_a", "_b"], sort=False)["val_accuracy"].agg(["mean", "size"]).reset_index()
    return cells.rename(columns={"_a": "y_value", "_b": "x_value", "mean": "mean_val_accuracy", "size": "runs"})


def heatmaps(table: pd.DataFrame, out_dir: Path) -> tuple[list[dict], pd.DataFrame]:
    """Per backbone, one panel per pair of hyperparameters (strategy counts as one) that vary.

    A cell is the mean validation accuracy of the runs with that pair of values; all
    panels of a backbone share one colour scale. One PNG per backbone.
    """
    items, frames = [], []
    files = layout.GridFolder(out_dir)
    csv = files.heatmaps_csv
    for backbone, runs in table.groupby("backbone", sort=False):
        varying = [c for c in hp_columns(runs) if runs[c].dropna().map(_label).nunique() > 1]
        panels = []
        for a, b in itertools.combinations(varying, 2):
            cells = heatmap_cells(runs, a, b)
            ys = sorted(set(cells["y_value"]), key=_sort_key)
            xs = sorted(set(cells["x_value"]), key=_sort_key)
            if len(ys) < 2 or len(xs) < 2:
                # The two vary only in different runs (e.g. C exists for features heads
                # only, so against strategy it is one row): no comparison to draw.
                continue
            grid = np.full((len(ys), len(xs)), np.nan)
            for c in cells.itertuples():
                grid[ys.index(c.y_value), xs.index(c.x_value)] = c.mean_val_accuracy
            panels.append((a, b, ys, xs, grid))
            frames.append(cells.assign(backbone=backbone, y_key=a, x_key=b))
        if not panels:
            continue
        png = files.heatmaps_png(backbone)
        _draw_panels(panels, png, backbone, runs["val_accuracy"].min(), runs["val_accuracy"].max())
        frames[-len(panels) :] = [f.assign(file=png.name) for f in frames[-len(panels) :]]
        items.append(
            item(
                "image",
                png,
                f"{backbone}: each panel crosses two hyperparameters; a cell is the validation "
                "accuracy averaged over the runs with those two values (blank: no such run). Bright cells are "
                "good settings; a panel with equal rows does not depend on its row parameter.",
                csv,
                root=out_dir,
            )
        )
    columns = ["backbone", "y_key", "y_value", "x_key", "x_value", "mean_val_accuracy", "runs", "file"]
    long = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    atomic.write_text(csv, long.to_csv(index=False))
    if not frames:
        log.info("grid summary: no backbone has two hyperparameters that vary together; no heatmaps")
    return items, long


def _draw_panels(panels, path: Path, backbone: str, vmin: float, vmax: float) -> None:
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plots.plt.subplots(rows, cols, figsize=(4.4 * cols, 3.6 * rows), squeeze=False)
    fig.subplots_adjust(wspace=0.55, hspace=0.6)
    for ax in axes.ravel()[len(panels) :]:
        ax.axis("off")
    for ax, (a, b, ys, xs, cells) in zip(axes.ravel(), panels):
        im = plots.draw_matrix(ax, cells, ys, xs, plots.MatrixStyle(fmt="{:.3f}", vmin=vmin, vmax=vmax))
        ax.set_ylabel(a)
        ax.set_xlabel(b)
    fig.suptitle(f"{backbone}: mean validation accuracy", fontsize=10)
    fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    plots.save_figure(fig, path)


def _best_per_strategy(table: pd.DataFrame, by: str) -> pd.DataFrame:
    rows = []
    for (backbone, strategy), runs in table.groupby(["backbone", "strategy"], sort=False):
        top = _top(runs, by)
        rows.append(
            {
                "backbone": backbone,
                "strategy": strategy,
                "runs": len(runs),
                "best_run": top["run"],
                "best_val_accuracy": top["val_accuracy"],
                "mean_val_accuracy": runs["val_accuracy"].mean(),
                "test_accuracy": top["test_accuracy"],
                "test_ci95_low": top["test_ci95_low"],
                "test_ci95_high": top["test_ci95_high"],
            }
        )
    return pd.DataFrame(rows)


def _strategy_bars(comp: pd.DataFrame, path: Path) -> Path:
    """Bars of each strategy's best validation accuracy per backbone, its test accuracy and CI as dots."""
    backbones = list(dict.fromkeys(comp["backbone"]))
    strategies = list(dict.fromkeys(comp["strategy"]))
    width = 0.8 / len(strategies)
    fig, ax = plots.plt.subplots(figsize=(2 + 1.6 * len(backbones) * max(1, len(strategies) / 2), 4))
    colors = plots.class_colors(len(strategies))
    for s, strategy in enumerate(strategies):
        sub = comp[comp["strategy"] == strategy].set_index("backbone").reindex(backbones)
        x = np.arange(len(backbones)) + (s - (len(strategies) - 1) / 2) * width
        ax.bar(x, sub["best_val_accuracy"], width, color=colors[s], alpha=0.8, label=f"{strategy} (val)")
        err = np.vstack([sub["test_accuracy"] - sub["test_ci95_low"], sub["test_ci95_high"] - sub["test_accuracy"]])
        ax.errorbar(
            x,
            sub["test_accuracy"],
            yerr=np.nan_to_num(np.abs(err)),
            fmt="o",
            color="black",
            ms=4,
            capsize=3,
            label="test (95% CI)" if s == 0 else None,
        )
    ax.set_xticks(range(len(backbones)), backbones)
    ax.set_ylabel("accuracy of the best run")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return plots.save_figure(fig, path)


def strategy_comparison(table: pd.DataFrame, out_dir: Path, by: str = "run", predictions=None) -> dict:
    """Best run of each strategy per backbone: val accuracy bars, test accuracy with its CI.

    predictions: {(backbone, run): path of its per-image test predictions}; with them
    the best runs of every two strategies are compared on the same images (comparisons.csv).
    """
    comp = _best_per_strategy(table, by)
    files = layout.GridFolder(out_dir)
    csv = files.strategies_csv
    atomic.write_text(csv, comp.to_csv(index=False))
    png = _strategy_bars(comp, files.strategies_png)
    pairs_csv = files.comparisons_csv
    atomic.write_text(pairs_csv, comparisons(comp, predictions or {}).to_csv(index=False))
    pairs = item(
        "table",
        pairs_csv,
        "The best runs of every two strategies on the same test images: how many images "
        "only one of them gets right, and McNemar's exact test of whether those disagreements split evenly "
        f"(p < {paired.ALPHA}: the difference is significant), beside whether their 95% CIs overlap.",
        pairs_csv,
        root=out_dir,
    )
    # The verdict in words is read first, above the numbers, not in a last column off-screen.
    pairs["text_column"] = "statement"
    return section(
        "strategies",
        "Strategy comparison",
        [
            item(
                "image",
                png,
                "Per backbone, the best run of each strategy: bars are validation accuracy (which picked "
                "the run), dots its test accuracy with the bootstrap 95% CI. Scratch vs finetune shows what "
                "pretraining buys; features shows how far a frozen base gets.",
                csv,
                root=out_dir,
            ),
            pairs,
        ],
    )


COMPARISON_COLUMNS = [
    "backbone",
    "strategy_a",
    "run_a",
    "test_accuracy_a",
    "strategy_b",
    "run_b",
    "test_accuracy_b",
    "both_right",
    "a_only_right",
    "b_only_right",
    "both_wrong",
    "p_value",
    "significant",
    "ci_overlap",
    "statement",
]


def comparisons(comp: pd.DataFrame, predictions: dict) -> pd.DataFrame:
    """McNemar's exact test between the best runs of every two strategies of a backbone."""
    rows = []
    for backbone, sub in comp.groupby("backbone", sort=False):
        for (_, a), (_, b) in itertools.combinations(sub.iterrows(), 2):
            paths = [predictions.get((backbone, r)) for r in (a["best_run"], b["best_run"])]
            row = {
                "backbone": backbone,
                "strategy_a": a["strategy"],
                "run_a": a["best_run"],
                "test_accuracy_a": a["test_accuracy"],
                "strategy_b": b["strategy"],
                "run_b": b["best_run"],
                "test_accuracy_b": b["test_accuracy"],
            }
            missing = [str(p) for p in paths if p is None or not Path(p).is_file()]
            if missing:
                log.warning(
                    "%s: no per-image test predictions for %s vs %s (%s): no paired test",
                    backbone,
                    a["best_run"],
                    b["best_run"],
                    missing or "not given",
                )
                rows.append({**row, "statement": f"no per-image predictions ({layout.PREDICTIONS}) to compare on"})
                continue
            (ya, pa), (yb, pb) = (records.read_predictions(p) for p in paths)
            if not np.array_equal(ya, yb):
                raise ValueError(
                    f"{paths[0]} and {paths[1]}: the two runs' test labels differ; re-run both "
                    "(they must predict the same prepared test split)"
                )
            row.update(
                paired.compare(
                    paired.Arm(a["strategy"], a["test_accuracy"], (a["test_ci95_low"], a["test_ci95_high"]), pa == ya),
                    paired.Arm(b["strategy"], b["test_accuracy"], (b["test_ci95_low"], b["test_ci95_high"]), pb == yb),
                )
            )
            rows.append(row)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def _runs_section(runs_csv: Path, best_json: Path, out_dir: Path) -> dict:
    return section(
        "runs",
        "All runs",
        [
            item(
                "table",
                runs_csv,
                "Every run of the grid: strategy, hyperparameters, validation accuracy (Wilson 95% "
                "CI), test accuracy (bootstrap 95% CI), test expected calibration error (ECE: mean gap between "
                "confidence and accuracy; empty for heads without probabilities), training time and throughput.",
                runs_csv,
                root=out_dir,
            ),
            item(
                "json",
                best_json,
                "Per backbone, the run analysed in detail (by default the best trained run, by "
                "validation accuracy) and the best trained, features and overall runs; test accuracy is an unbiased "
                "estimate because test data did not pick them.",
                None,
                root=out_dir,
            ),
        ],
        group=records.OWN_TABLE,
    )  # the report draws both itself


def _seeds_section(seeds: pd.DataFrame, seeds_csv: Path, out_dir: Path) -> dict | None:
    if not (seeds["seeds"] > 1).any():
        log.info("grid summary: every grid point ran with one seed; seeds.csv has no spread to show")
        return None
    return section(
        "seeds",
        "Runs that differ only by seed",
        [
            item(
                "table",
                seeds_csv,
                "One row per grid point: how many seeds ran it, and the mean, standard deviation "
                "and range of its validation and test accuracy over them. A difference between two settings "
                "smaller than their spread over seeds is not a difference.",
                seeds_csv,
                root=out_dir,
            ),
        ],
    )


def summarise_grid(metric_files, out_dir, *, title: str = "Grid summary", selection: Selection = Selection()) -> Path:
    """Write runs.csv, seeds.csv, best.json, heatmaps, the strategy comparison and index.json into out_dir.

    Each run's per-image test predictions are read from beside its metrics.json.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metric_files = [Path(p) for p in metric_files]
    table = runs_table(metric_files)
    files = layout.GridFolder(out_dir)
    runs_csv = files.runs_csv
    atomic.write_text(runs_csv, table.to_csv(index=False))
    seeds = seed_groups(table)
    seeds_csv = files.seeds_csv
    atomic.write_text(seeds_csv, seeds.to_csv(index=False))
    best = best_runs(table, selection)
    best_json = files.best_json
    records.write_best(best_json, best)
    for b, e in best.items():
        log.info(
            "run analysed for %s: %s (%s; val accuracy %.3f of %d runs)", b, e.run, e.chosen_as, e.val_accuracy, e.runs
        )
    sections = [_runs_section(runs_csv, best_json, out_dir)]
    seeds_sec = _seeds_section(seeds, seeds_csv, out_dir)
    if seeds_sec is not None:
        sections.append(seeds_sec)
    heat_items, _ = heatmaps(table, out_dir)
    if heat_items:
        sections.append(section("heatmaps", "Hyperparameter heatmaps", heat_items))
    predictions = {(r.backbone, r.run): p.parent / layout.PREDICTIONS for r, p in zip(table.itertuples(), metric_files)}
    sections.append(strategy_comparison(table, out_dir, selection.by, predictions))
    log.info("grid summary: %d runs of %d backbones", len(table), table["backbone"].nunique())
    return write_index(out_dir, title, sections)
