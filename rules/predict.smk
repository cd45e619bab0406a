# Trained models put to work (convscope/predict, convscope/export); neither is part
# of `all`. `snakemake predict --config predict_folder=DIR` applies each backbone's
# best run (or the runs config key predict.runs names) to the images in DIR:
# R/predict/{backbone}/{run}/predictions.csv, index.html and Grad-CAM overlays.
# The folder's listing is a param, so adding an image reruns the job, and the job
# predicts only the new images (per-image cache). `snakemake export`: the same
# runs as model.keras + TF SavedModel in R/export/{backbone}/{run}/.
# Helpers (predict_runs): rules/common.smk.


rule predict_model:
    input:
        model=L.model("{backbone}", "{run}"),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        csv=L.predictions("{backbone}", "{run}"),
        html=L.predict_page("{backbone}", "{run}"),
    log:
        L.log("predict", "{backbone}", "{run}"),
    benchmark:
        L.benchmark("predict", "{backbone}", "{run}")
    wildcard_constraints:
        backbone=BACKBONE,
        run=f"{TRAINED_RUN}|{FEATURES_RUN}",
    conda:
        "../envs/train.yaml"
    threads: ANALYSIS["threads"]
    resources:
        gpu=1 if ANALYSIS["gpu"] else 0,
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    params:
        folder=lambda wc: predict_params.folder(config),
        listing=lambda wc: predict_images.fingerprint(predict_params.folder(config)),
        settings=lambda wc: predict_params.settings(config, wc.backbone),
        classes=CLASSES,
        backend=config["train"]["backend"],
        out_dir=lambda wc, output: os.path.dirname(output.csv),
    script:
        "../scripts/predict.py"


rule predict:
    input:
        lambda wc: [L.predictions(b, r) for b, r in predict_runs()],
        after_split=after_split,  # planned again once split has run (common.smk)
    localrule: True


rule export_model:
    input:
        model=L.model("{backbone}", "{run}"),
        test=lambda wc: prepared_split(wc.backbone, "test"),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        keras=L.export_keras("{backbone}", "{run}"),
        saved_model=directory(L.export_saved_model("{backbone}", "{run}")),
        check=L.export_check("{backbone}", "{run}"),
    log:
        L.log("export", "{backbone}", "{run}"),
    benchmark:
        L.benchmark("export", "{backbone}", "{run}")
    wildcard_constraints:
        backbone=BACKBONE,
        run=f"{TRAINED_RUN}|{FEATURES_RUN}",
    conda:
        "../envs/train.yaml"
    threads: ANALYSIS["threads"]
    resources:
        mem_mb=ANALYSIS["mem_mb"],
        runtime=ANALYSIS["runtime"],
    params:
        check_images=config["export"]["check_images"],
        out_dir=lambda wc, output: os.path.dirname(output.check),
    script:
        "../scripts/export.py"


rule export:
    input:
        lambda wc: [L.export_check(b, r) for b, r in predict_runs()],
        after_split=after_split,  # planned again once split has run (common.smk)
    localrule: True
