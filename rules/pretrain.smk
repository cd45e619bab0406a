# Pretraining (optional): a backbone with `weights: pretrained` is first trained
# on the `pretrain` section's source classes (crawled like the target classes);
# its finetune, progressive and features runs start from the base written here.
# The params are the pretrain section's training keys only: editing the target
# grid never re-pretrains. Helpers: rules/common.smk.


rule pretrain:
    input:
        crawl=[L.crawl_summary(cls) for cls in SOURCE_CLASSES],
    output:
        weights=L.pretrained_base("{backbone}"),
        record=L.pretrain_record("{backbone}"),
    log:
        L.log("pretrain", "{backbone}"),
    benchmark:
        L.benchmark("pretrain", "{backbone}")
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
        raw=L.raw_dir,
        pretrain=lambda wc: cfg.pretrain_params(config, wc.backbone),
    script:
        "../scripts/pretrain.py"
