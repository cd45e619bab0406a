# The data audit per backbone: label issues (cleanlab on k-fold probabilities:
# logistic regression on the embed rule's frozen-base embeddings with pretrained or
# ImageNet weights, else a small convnet trained k-fold on the prepared images) and
# near copies across splits (pixels of the prepared images, calibrated on train).


rule audit:
    input:
        embeddings=L.embeddings("{backbone}"),
        index=lambda wc: [
            prepared_split(wc.backbone, s, layout.PREPARED_INDEX) for s in SPLITS
        ],
        labels=lambda wc: [
            prepared_split(wc.backbone, s, layout.PREPARED_LABELS) for s in SPLITS
        ],
        after_split=after_split,  # planned again once split has run (common.smk)
    output:
        **audit_files("{backbone}"),
    log:
        L.log("audit", "{backbone}"),
    benchmark:
        L.benchmark("audit", "{backbone}")
    wildcard_constraints:
        backbone=BACKBONE,
    conda:
        "../envs/train.yaml"
    threads: config["train"]["threads"]
    params:
        classes=CLASSES,
        options=lambda wc: {
            **AUDIT_OPTIONS,
            "seed": config["seed"],
            "weights": config["backbones"][wc.backbone].get("weights", "imagenet"),
        },
        backend=config["train"]["backend"],
    script:
        "../scripts/audit.py"
