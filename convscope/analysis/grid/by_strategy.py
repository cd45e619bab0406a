"""One backbone's strategies side by side: CKA against depth, and accuracy under corruptions.

The grid summary records the best run of each (strategy, tune_depth) of a backbone
(best.json "by_strategy"). Each has a CKA record and a corruptions record: the analysed
run's from its analyse job, the others' from a probe job (convscope.analysis.probe). The
strategy_change job (rules/analyse.smk) reads them and writes, in
layout.ByStrategyFolder:

    cka.png / cka.csv                  CKA with the starting weights against depth, one line per
                                       (strategy, tune_depth); frozen blocks drawn hollow (1.0 by
                                       construction), not hidden
    corruptions.png / corruptions.csv  test accuracy against severity, one panel per corruption,
                                       a line per strategy (its best run over every depth)
    by_strategy.json                   the two sentences (records.BY_STRATEGY)
    index.json                         the sections the report shows
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from convscope import layout, records
from convscope.analysis.index import item, section, write_index

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Line:
    """One best run of a (strategy, tune_depth) with what its CKA and corruption records hold (None: not run)."""

    strategy: str
    tune_depth: object  # int, "all", or None (features heads)
    run: str
    strategy_best: bool
    cka: dict | None
    corruptions: dict | None

    def columns(self, backbone: str) -> dict:
        """The columns that name this line in a table row."""
        return {"backbone": backbone, "strategy": self.strategy, "tune_depth": self.tune_depth, "run": self.run}

    def label(self, lines: list[Line]) -> str:
        """The strategy, with its depth when the strategy has several lines."""
        several = sum(x.strategy == self.strategy for x in lines) > 1
        return f"{self.strategy} d{self.tune_depth}" if several and self.tune_depth is not None else self.strategy


def read_lines(entries: list[dict], cka_files, corruption_files) -> list[Line]:
    """best.json's by_strategy entries with their records (the three lists in the same order)."""
    if not len(entries) == len(cka_files) == len(corruption_files):
        raise ValueError(
            f"{len(entries)} runs in best.json by_strategy but {len(cka_files)} CKA and {len(corruption_files)} "
            "corruption records; re-run the summarise rule (rules/common.smk by_strategy_inputs lists them)"
        )
    return [
        Line(
            e["strategy"],
            e["tune_depth"],
            e["run"],
            bool(e.get("strategy_best")),
            records.CKA.read(c),
            records.CORRUPTIONS.read(k),
        )
        for e, c, k in zip(entries, cka_files, corruption_files)
    ]


# ---- CKA against depth ------------------------------------------------------------------------


def cka_table(backbone: str, lines: list[Line]) -> pd.DataFrame:
    """One row per (run, block) of the runs whose CKA ran: the data of cka.png."""
    rows = [
        {
            **line.columns(backbone),
            "line": line.label(lines),
            "depth": k,
            "block": b["block"],
            "trained": bool(b["trained"]),
            "cka": float(b["cka"]),
        }
        for line in lines
        if line.cka is not None
        for k, b in enumerate(line.cka["blocks"])
    ]
    columns = ["backbone", "strategy", "tune_depth", "run", "line", "depth", "block", "trained", "cka"]
    return pd.DataFrame(rows, columns=columns)


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def cka_figure(table: pd.DataFrame, path: Path, title: str) -> Path:
    """A line per run; filled markers where the block trained, hollow where it stayed frozen."""
    from convscope.analysis import plots

    blocks = list(dict.fromkeys(table["block"]))
    labels = list(dict.fromkeys(table["line"]))
    colors = plots.class_colors(len(labels))
    fig, ax = plots.plt.subplots(figsize=(2.6 + 0.6 * len(blocks), 3.6))
    for n, label in enumerate(labels):
        sub = table[table["line"] == label]
        xs = [blocks.index(b) for b in sub["block"]]
        marker, color = MARKERS[n % len(MARKERS)], colors[n]
        # Dashed: lines of runs that share values (frozen blocks all sit at 1.0) stay visible.
        ax.plot(xs, sub["cka"], color=color, lw=1.4, ls=("-", "--", ":", "-.")[n % 4], label=label)
        for x, y, trained in zip(xs, sub["cka"], sub["trained"]):
            ax.plot(x, y, marker, color=color, mfc=color if trained else "white", ms=7 - 0.6 * (n % 4))
    ax.set_xticks(range(len(blocks)), blocks, rotation=45 if len(blocks) > 8 else 0, fontsize=8)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("block (input → output)")
    ax.set_ylabel("linear CKA with the start")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.plot([], [], "o", color="0.4", mfc="white", label="hollow: frozen (1.0)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return plots.save_figure(fig, path)


def cka_statement(lines: list[Line]) -> str:
    """One sentence: each line's CKA at the last block, frozen bases said as such."""
    done = [line for line in lines if line.cka is not None]
    if not done:
        return "No strategy's best run has a CKA record (CKA off in config analysis.cka, or no starting base)."
    last = done[0].cka["blocks"][-1]["block"] if done[0].cka["blocks"] else "last block"
    parts, frozen = [], []
    for line in done:
        blocks = line.cka["blocks"]
        if blocks and not any(b["trained"] for b in blocks):
            frozen.append(line.label(lines))
        elif blocks:
            parts.append(f"{line.label(lines)} {float(blocks[-1]['cka']):.2f}")
    text = f"CKA with the starting weights at the last block ({last}): {', '.join(parts)}" if parts else ""
    if frozen:
        text += ("; " if text else "") + f"{', '.join(frozen)} kept the base frozen (1.0 at every block)"
    missing = [line.label(lines) for line in lines if line.cka is None]
    if missing:
        text += f"; no CKA for {', '.join(missing)} (see its job log)"
    return text + "."


# ---- accuracy under corruptions -----------------------------------------------------------------


def corruption_table(backbone: str, lines: list[Line]) -> pd.DataFrame:
    """Every run's accuracy per corruption and severity (the runs data; strategy_best: drawn in the figure)."""
    rows = [
        {
            **line.columns(backbone),
            "strategy_best": line.strategy_best,
            "corruption": r["corruption"],
            "severity": int(r["severity"]),
            "accuracy": float(r["accuracy"]),
        }
        for line in lines
        if line.corruptions is not None
        for r in line.corruptions["rows"]
    ]
    columns = ["backbone", "strategy", "tune_depth", "run", "strategy_best", "corruption", "severity", "accuracy"]
    return pd.DataFrame(rows, columns=columns)


def corruption_figure(table: pd.DataFrame, path: Path, title: str) -> Path:
    """One panel per corruption: accuracy against severity, a line per strategy (its best run)."""
    from convscope.analysis import plots
    from convscope.analysis.trust.corruptions import TITLES

    best = table[table["strategy_best"]]
    names = list(dict.fromkeys(best["corruption"]))
    strategies = list(dict.fromkeys(best["strategy"]))
    colors = plots.class_colors(len(strategies))
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plots.plt.subplots(rows, cols, figsize=(2.7 * cols + 1.4, 2.4 * rows), squeeze=False, sharey=True)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        for n, strategy in enumerate(strategies):
            sub = best[(best["corruption"] == name) & (best["strategy"] == strategy)].sort_values("severity")
            ax.plot(sub["severity"], sub["accuracy"], "o-", color=colors[n], ms=4, label=strategy)
        ax.set_title(TITLES.get(name, name), fontsize=9)
        ax.set_xticks(sorted(set(best["severity"])))
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("severity (0 = clean)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy", fontsize=8)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return plots.save_figure(fig, path)


TIE = 0.01  # mean accuracies closer than this are named together: the order would flip with the seed


def _ranked(mean: pd.Series, end: int) -> str:
    """The strategy at `end` (0: highest, -1: lowest) of `mean`, with any within TIE of it: "a keeps" / "a and b keep"."""
    level = mean.iloc[end]
    names = [s for s, v in mean.items() if abs(v - level) < TIE]
    return f"{names[0]} keeps" if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]} keep"


def corruption_statement(table: pd.DataFrame) -> str:
    """One sentence comparing the strategies at the worst severity of the corruption that separates them most."""
    from convscope.analysis.trust.corruptions import TITLES

    best = table[table["strategy_best"]]
    if best.empty:
        return "No strategy's best run has a corruptions record (off in config analysis.corruptions)."
    worst = int(best["severity"].max())
    at = best[best["severity"] == worst].pivot_table(index="corruption", columns="strategy", values="accuracy")
    at = at[list(dict.fromkeys(best["strategy"]))]  # strategies in grid order
    name = (at.max(axis=1) - at.min(axis=1)).idxmax()  # the first of equal gaps, in config order
    row = at.loc[name].sort_values(ascending=False)
    first = row.index[0]
    others = "".join(f", {s} {v:.2f}" for s, v in row.iloc[1:].items())
    text = f"At severity {worst} of {TITLES.get(name, name)}, {first} keeps {row.iloc[0]:.2f}{others}"
    if len(row) == 1:
        return text + f" (only {first} ran, nothing to compare with)."
    mean = at.mean(axis=0).sort_values(ascending=False)
    return (
        f"{text}: the corruption that separates the strategies most. Averaged over the {len(at)} corruptions at "
        f"severity {worst}, {_ranked(mean, 0)} the most ({mean.iloc[0]:.2f}), {_ranked(mean, -1)} the least "
        f"({mean.iloc[-1]:.2f})."
    )


# ---- the job ------------------------------------------------------------------------------------


def _sections(backbone: str, folder: layout.ByStrategyFolder, texts: tuple[str, str], lines: list[Line]) -> list:
    cka_text, corr_text = texts
    root = folder.path
    frozen = "Hollow markers: blocks that stayed frozen in that run, 1.0 by construction."
    return [
        section(
            "by_strategy_cka",
            "Representation change per strategy and tune depth (CKA)",
            [
                item(
                    "image",
                    folder.cka_png,
                    f"{cka_text} Linear CKA between each block's activations on the test images in the best run "
                    f"of each strategy and tune depth of {backbone} ({len(lines)} runs) and in the weights that run "
                    f"started from: 1 = the same representation, near 0 = unrelated. {frozen}",
                    folder.cka_csv,
                    root=root,
                )
            ],
        ),
        section(
            "by_strategy_corruptions",
            "Robustness to corruptions per strategy",
            [
                item(
                    "image",
                    folder.corruptions_png,
                    f"{corr_text} Test accuracy of each strategy's best run of {backbone} under ImageNet-C "
                    "corruptions (Hendrycks & Dietterich 2019), one panel per corruption.",
                    folder.corruptions_csv,
                    root=root,
                ),
                item(
                    "table",
                    folder.corruptions_csv,
                    f"{backbone}: test accuracy per run, corruption and severity (strategy_best: the run drawn).",
                    folder.corruptions_csv,
                    root=root,
                ),
            ],
        ),
    ]


def by_strategy(backbone: str, lines: list[Line], out_dir) -> Path:
    """Write every file of layout.ByStrategyFolder for one backbone; returns index.json."""
    from convscope import atomic

    folder = layout.ByStrategyFolder(out_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    cka = cka_table(backbone, lines)
    corr = corruption_table(backbone, lines)
    atomic.write_text(folder.cka_csv, cka.to_csv(index=False))
    atomic.write_text(folder.corruptions_csv, corr.to_csv(index=False))
    texts = (cka_statement(lines), corruption_statement(corr))
    _placeholder_or(cka.empty, folder.cka_png, lambda p: cka_figure(cka, p, f"{backbone}: representation vs start"))
    _placeholder_or(
        corr.empty,
        folder.corruptions_png,
        lambda p: corruption_figure(corr, p, f"{backbone}: accuracy under corruptions"),
    )
    entries = [
        {"strategy": x.strategy, "tune_depth": x.tune_depth, "run": x.run, "strategy_best": x.strategy_best}
        for x in lines
    ]
    records.BY_STRATEGY.write(
        folder.record,
        {"backbone": backbone, "cka_statement": texts[0], "corruptions_statement": texts[1], "lines": entries},
    )
    log.info("%s: %s %s", backbone, *texts)
    return write_index(folder.path, f"{backbone}: strategies side by side", _sections(backbone, folder, texts, lines))


def _placeholder_or(empty: bool, path: Path, draw) -> Path:
    """draw(path), or a small figure saying there is nothing to draw (the job's outputs always exist)."""
    if not empty:
        return draw(path)
    from convscope.analysis import plots

    fig, ax = plots.plt.subplots(figsize=(4, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, "not run (see the job log)", ha="center", va="center")
    return plots.save_figure(fig, path)


def from_best(best_json, backbone: str, cka_files, corruption_files, out_dir) -> Path:
    """The strategy_change job: best.json's by_strategy for `backbone` with its records, in that order."""
    best = records.read_best(best_json)
    if backbone not in best:
        raise ValueError(f"{best_json}: no entry for backbone {backbone!r}; re-run the summarise rule")
    if not best[backbone].by_strategy:
        # Every summary has at least one run per backbone: an empty list is a best.json of an older summarise.
        raise ValueError(f"{best_json}: no by_strategy entries for {backbone}; re-run it (snakemake -R summarise)")
    lines = read_lines(best[backbone].by_strategy, list(cka_files), list(corruption_files))
    return by_strategy(backbone, lines, out_dir)
