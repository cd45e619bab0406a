# Clean sees all classes at once: an image found in two classes is ambiguous and
# quarantined from both. Split follows in the same group (small CPU jobs).
#
# `split` is a checkpoint: once it has run, Snakemake plans the jobs after it again
# from what it wrote. An edit that changes the manifest but not the kept images
# (a review line on a quarantined image, quality thresholds: flags only) leaves
# the split lists with the same bytes, and their digests (results/clean/splits/*.sha256,
# small, so Snakemake compares their checksums: the lists pass its 1 MB limit at about
# 9,000 images) with them, so nothing downstream of them reruns; one that changes the test split alone leaves the train
# and val lists, and so every training, as they are. Every job after split asks
# `after_split` (common.smk) for its inputs, which makes it one that is planned again.


rule clean:
    input:
        raw=[L.crawl_summary(c) for c in CLASSES],
        # The user's decisions (config clean.review): editing the file reruns clean.
        review=[config["clean"]["review"]] if config["clean"]["review"] else [],
    output:
        # update(): not removed before the job runs; clean reads it as the prior decisions.
        update(L.clean_manifest),
    log:
        L.log("clean"),
    benchmark:
        L.benchmark("clean")
    group:
        "data"
    conda:
        "../envs/data.yaml"
    params:
        classes=CLASSES,
        options={k: v for k, v in config["clean"].items() if k != "review"},
    script:
        "../scripts/clean.py"


checkpoint split:
    input:
        L.clean_manifest,
    output:
        **{split: L.split_list(split) for split in SPLITS},
        # Each list's SHA-256: what the rules after split take as input (layout.py).
        **{f"{split}_digest": L.split_digest(split) for split in SPLITS},
    log:
        L.log("split"),
    benchmark:
        L.benchmark("split")
    group:
        "data"
    conda:
        "../envs/data.yaml"
    params:
        options=config["split"],
        seed=config["seed"],
    script:
        "../scripts/split.py"
