# The data audit per backbone: label issues (cleanlab on k-fold probabilities) and
# near-twins across splits, both on the frozen-base embeddings of the embed rule.
# No network pass and no Keras: seconds of scikit-learn per backbone.


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
    params:
        classes=CLASSES,
        options={**AUDIT_OPTIONS, "seed": config["seed"]},
    script:
        "../scripts/audit.py"
