# Analyses. `summarise` is a checkpoint: once every run of the grid has its
# metrics.json it writes R/analysis/grid/ (runs table, heatmaps, strategies) and
# best.json, and only then do the input functions know which runs to analyse
# (config analysis.runs: best = the best trained run of each backbone, best_any =
# the best run of any strategy, all = every run; analysis.best_by: by a run's own
# validation accuracy or by its mean over seeds). One `analyse` job per model: the model is loaded
# once and every analysis of it (standard + explanations) runs in that job.
# Input functions: rules/common.smk (analyses section).


checkpoint summarise:
    input:
        metrics=[L.metrics(r.backbone, r.id) for r in grid.runs(config)],
        # Per-image test predictions, for the paired (McNemar) strategy comparison.
        predictions=[L.test_predictions(r.backbone, r.id) for r in grid.runs(config)],
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        index=L.grid_index,
        runs=L.runs_csv,
        best=L.best_json,
        heatmaps=L.heatmaps_csv,
        strategies=L.strategies_csv,
        seeds=L.seeds_csv,
        comparisons=L.comparisons_csv,
    log:
        L.log("summarise"),
    benchmark:
        L.benchmark("summarise")
    conda:
        "../envs/train.yaml"
    params:
        selection=selection_params(),
    script:
        "../scripts/summarise.py"


rule analyse:
    input:
        unpack(analyse_inputs),
        after_split=after_split,  # planned again once split has run (common.smk)
    # Besides index.json, the records other stages read by name (the report's
    # findings): every job writes each, a "not run" record when that analysis was off.
    output:
        **L.analysis_records("{backbone}", "{run}"),
        index=L.analysis_index("{backbone}", "{run}"),
    log:
        L.log("analyse", "{backbone}", "{run}"),
    benchmark:
        L.benchmark("analyse", "{backbone}", "{run}")
    wildcard_constraints:
        backbone=BACKBONE,
        run=f"{TRAINED_RUN}|{FEATURES_RUN}",
    priority: LONGEST_FIRST  # common.smk: job order
    conda:
        "../envs/train.yaml"
    threads: ANALYSIS["threads"]
    # gpu=1 by default: occlusion, Grad-CAM and gradient-ascent feature
    # visualization are many forward/backward passes, minutes on a CPU for real
    # backbones and seconds on a GPU. Analysis jobs start after the whole grid has
    # trained, so they do not compete with training for GPUs.
    resources:
        gpu=1 if ANALYSIS["gpu"] else 0,
        # A whole GPU (train.jobs_per_gpu shares it between training jobs only): an
        # analysis' memory is not capped.
        gpu_share=100 if ANALYSIS["gpu"] else 0,
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    params:
        options=cfg.analysis_params(config),
        classes=CLASSES,
        backend=config["train"]["backend"],
        # Weights the run started from: rebuilt for the change-from-base analysis.
        backbone_options=lambda wc: grid.backbone_options(config, wc.backbone),
    script:
        "../scripts/analyse.py"


# CKA and corruptions only, for the best run of a (strategy, tune_depth) that is not
# analysed (best.json by_strategy; convscope.analysis.probe): the model loaded once,
# the analyse job's two steps. Its params are the options those two read.
rule probe:
    input:
        unpack(probe_inputs),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        **L.probe_records("{backbone}", "{run}"),
    log:
        L.log("probe", "{backbone}", "{run}"),
    benchmark:
        L.benchmark("probe", "{backbone}", "{run}")
    wildcard_constraints:
        backbone=BACKBONE,
        run=f"{TRAINED_RUN}|{FEATURES_RUN}",
    conda:
        "../envs/train.yaml"
    threads: ANALYSIS["threads"]
    resources:
        gpu=1 if ANALYSIS["gpu"] else 0,
        gpu_share=100 if ANALYSIS["gpu"] else 0,
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    params:
        options=probe_lib.params(cfg.analysis_params(config)),
        classes=CLASSES,
        backend=config["train"]["backend"],
        # The starting base is rebuilt for CKA, as in analyse.
        backbone_options=lambda wc: grid.backbone_options(config, wc.backbone),
    script:
        "../scripts/probe.py"


# One backbone's strategies side by side (convscope.analysis.grid.by_strategy): CKA
# against depth, a line per (strategy, tune_depth), and accuracy under corruptions,
# a line per strategy, from the analysed run's records and the probes'.
rule strategy_change:
    input:
        unpack(by_strategy_inputs),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        **L.by_strategy("{backbone}").outputs,
    log:
        L.log("strategy_change", "{backbone}"),
    benchmark:
        L.benchmark("strategy_change", "{backbone}")
    wildcard_constraints:
        backbone=BACKBONE,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/strategy_change.py"


# `snakemake analyses`: everything up to the analyses (no report).
rule analyses:
    input:
        L.grid_index,
        analyses_all,
        after_split=after_split,  # planned again once split has run (common.smk)
    localrule: True
