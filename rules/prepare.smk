# One job per distinct input size and split, shared by every backbone of that size.
# Per split: an edit that changes only the test split (a review line dropping a test
# image) leaves the train and val lists' bytes, and so their arrays and the trainings
# that read them, as they are.


rule prepare:
    input:
        # The list's digest, not the list: Snakemake checksums files up to 1 MB only
        # (layout.split_digest). split writes both, so the list is there.
        digest=L.split_digest("{split}"),
    output:
        L.prepared_split_files("{size}", "{split}"),
    log:
        L.log("prepare", "{size}", "{split}"),
    benchmark:
        L.benchmark("prepare", "{size}", "{split}")
    conda:
        "../envs/data.yaml"
    # Threads decode images; they do not change the arrays, so they are no param.
    threads: config["prepare"]["threads"]
    resources:
        mem_mb=4000,
    params:
        split_list=lambda w: L.split_list(w.split),
        raw=L.raw_dir,
        classes=CLASSES,
        options={"resize": config["prepare"]["resize"]},
    script:
        "../scripts/prepare.py"
