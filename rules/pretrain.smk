# Pretraining (optional): a backbone with `weights: pretrained` is first trained
# on the `pretrain` section's source classes (crawled like the target classes);
# its finetune, progressive and features runs start from the base written here.
# The params are the pretrain section's training keys only: editing the target
# grid never re-pretrains. Helpers: rules/common.smk.


rule pretrain:
    input:
        crawl=expand(f"{R}/raw/{{cls}}/crawl.json", cls=SOURCE_CLASSES),
    output:
        weights=f"{R}/pretrained/{{backbone}}/base.weights.h5",
        record=f"{R}/pretrained/{{backbone}}/pretrain.json",
    log:
        f"{R}/logs/pretrain/{{backbone}}.log",
    benchmark:
        f"{R}/benchmarks/pretrain/{{backbone}}.tsv"
    wildcard_constraints:
        backbone=BACKBONE,
    conda:
        "../envs/train.yaml"
    threads: config["pretrain"]["threads"]
    resources:
        gpu=1 if config["train"]["gpu"] else 0,
        mem_mb=config["train"]["mem_mb"],
        runtime=config["train"]["runtime"],
    params:
        raw=f"{R}/raw",
        pretrain=lambda wc: cfg.pretrain_params(config, wc.backbone),
    script:
        "../scripts/pretrain.py"
