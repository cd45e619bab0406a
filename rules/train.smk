# Training: one job per grid run (convscope/grid.py expands the grid and names
# the runs). Trained strategies (finetune, progressive, scratch) and features
# heads write R/models/{backbone}/{run}/ from the train and val splits (fit.json);
# embeddings are computed once per backbone and split by `embed` and only read by
# the heads. `evaluate` / `evaluate_head` then score the test split (metrics.json,
# test_predictions.csv): no training job reads the test split, so an edit of the
# test images alone (a review line) rescores every run and retrains none.
# Jobs that use the network claim `gpu=1` and `gpu_share=100/train.jobs_per_gpu`
# (common.smk gpu_share), so profiles/default runs train.jobs_per_gpu of them on one
# GPU at once and a cluster profile asks for one GPU per job; `train.gpu: false`
# drops the claims on CPU-only machines (jobs run side by side).
# Helpers (train_inputs, prepared_split, trained_all, ...): rules/common.smk.


rule train:
    input:
        unpack(train_inputs),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        model=L.model("{backbone}", "{run}"),
        history=L.history("{backbone}", "{run}"),
        fit=L.fit("{backbone}", "{run}"),
    log:
        L.log("train", "{backbone}", "{run}"),
    benchmark:
        L.benchmark("train", "{backbone}", "{run}")
    wildcard_constraints:
        backbone=BACKBONE,
        run=TRAINED_RUN,
    priority: LONGEST_FIRST  # common.smk: job order
    # On a cluster a run's training and evaluation are one job (one allocation, one
    # wait in the queue); an evaluation alone (new test images) is a job of its own.
    group:
        "run"
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1 if config["train"]["gpu"] else 0,
        gpu_share=gpu_share(config["train"]["gpu"]),
        mem_mb=config["train"]["mem_mb"],
        runtime=config["train"]["runtime"],
    params:
        run=lambda wc: grid.train_params(config, wc.backbone, wc.run),
    script:
        "../scripts/train.py"


rule evaluate:
    input:
        model=L.model("{backbone}", "{run}"),
        fit=L.fit("{backbone}", "{run}"),
        images=lambda wc: prepared_split(wc.backbone, "test"),
        labels=lambda wc: prepared_split(wc.backbone, "test", layout.PREPARED_LABELS),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        metrics=L.metrics("{backbone}", "{run}"),
        predictions=L.test_predictions("{backbone}", "{run}"),
    log:
        L.log("evaluate", "{backbone}", "{run}"),
    benchmark:
        L.benchmark("evaluate", "{backbone}", "{run}")
    wildcard_constraints:
        backbone=BACKBONE,
        run=TRAINED_RUN,
    group:
        "run"
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1 if config["train"]["gpu"] else 0,
        gpu_share=gpu_share(config["train"]["gpu"]),
        mem_mb=config["train"]["mem_mb"],
    params:
        backend=config["train"]["backend"],
    script:
        "../scripts/evaluate.py"


# One job per split: the test split's embeddings change alone when only test images do.
rule embed:
    input:
        unpack(lambda wc: pretrained_base(wc.backbone)),
        images=lambda wc: prepared_split(wc.backbone, wc.split),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        embeddings=L.embedding("{backbone}", "{split}"),
        info=L.embed_info("{backbone}", "{split}"),
    log:
        L.log("embed", "{backbone}", "{split}"),
    benchmark:
        L.benchmark("embed", "{backbone}", "{split}")
    wildcard_constraints:
        backbone=BACKBONE,
    priority: EMBED_PRIORITY  # common.smk: job order
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    resources:
        gpu=1 if config["train"]["gpu"] else 0,
        gpu_share=gpu_share(config["train"]["gpu"]),
        mem_mb=config["train"]["mem_mb"],
        runtime=config["train"]["runtime"],
    params:
        features=lambda wc: grid.features_params(config, wc.backbone),
        num_classes=len(CLASSES),
    script:
        "../scripts/embed.py"


# A head reads the embeddings and labels only: no Keras, no network pass, no GPU
# claim (it never waits for one). Seconds of CPU each: locally they run beside
# training as soon as their backbone's embeddings exist; on a cluster, group
# "features" with the profile's group-components bundles them into few jobs.
rule features_head:
    input:
        embeddings=[L.embedding("{backbone}", s) for s in FIT_SPLITS],
        info=L.embed_info("{backbone}", "train"),
        labels=lambda wc: [
            prepared_split(wc.backbone, s, layout.PREPARED_LABELS) for s in FIT_SPLITS
        ],
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        head=L.head("{backbone}", "{run}"),
        fit=L.fit("{backbone}", "{run}"),
    log:
        L.log("features", "{backbone}", "{run}"),
    benchmark:
        L.benchmark("features", "{backbone}", "{run}")
    wildcard_constraints:
        backbone=BACKBONE,
        run=FEATURES_RUN,
    priority: 10
    group:
        "features"
    conda:
        "../envs/train.yaml"
    threads: 1
    params:
        head=lambda wc: grid.head_params(config, wc.backbone, wc.run),
    script:
        "../scripts/features_head.py"


rule evaluate_head:
    input:
        head=L.head("{backbone}", "{run}"),
        fit=L.fit("{backbone}", "{run}"),
        embeddings=L.embedding("{backbone}", "test"),
        labels=lambda wc: prepared_split(wc.backbone, "test", layout.PREPARED_LABELS),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        metrics=L.metrics("{backbone}", "{run}"),
        predictions=L.test_predictions("{backbone}", "{run}"),
    log:
        L.log("evaluate_head", "{backbone}", "{run}"),
    benchmark:
        L.benchmark("evaluate_head", "{backbone}", "{run}")
    wildcard_constraints:
        backbone=BACKBONE,
        run=FEATURES_RUN,
    group:
        "features"
    conda:
        "../envs/train.yaml"
    threads: 1
    script:
        "../scripts/evaluate_head.py"


# On demand (not in `all`): the Keras model of a features run, frozen base +
# the fitted linear head, for analyses that need a network.
rule features_model:
    input:
        unpack(lambda wc: pretrained_base(wc.backbone)),
        head=L.head("{backbone}", "{run}"),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        model=L.model("{backbone}", "{run}"),
    log:
        L.log("features", "{backbone}", "{run}.model"),
    benchmark:
        # Its own folder: features/{backbone}/{run}.model.tsv would also match the
        # features_head benchmark, which the report declares as an input.
        L.benchmark("features_model", "{backbone}", "{run}")
    wildcard_constraints:
        backbone=BACKBONE,
        run=FEATURES_RUN,
    conda:
        "../envs/train.yaml"
    params:
        features=lambda wc: grid.features_params(config, wc.backbone),
        num_classes=len(CLASSES),
    script:
        "../scripts/features_model.py"


rule sanity:
    input:
        images=lambda wc: prepared_split(wc.backbone, "test"),
        index=lambda wc: prepared_split(wc.backbone, "test", layout.PREPARED_INDEX),
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        L.sanity("{backbone}"),
    log:
        L.log("sanity", "{backbone}"),
    benchmark:
        L.benchmark("sanity", "{backbone}")
    wildcard_constraints:
        backbone=BACKBONE,
    conda:
        "../envs/train.yaml"
    resources:
        gpu=1 if config["train"]["gpu"] else 0,
        gpu_share=gpu_share(config["train"]["gpu"]),
    params:
        options=lambda wc: grid.backbone_options(config, wc.backbone),
        backend=config["train"]["backend"],
        n_images=config["train"]["sanity_images"],
    script:
        "../scripts/sanity.py"
