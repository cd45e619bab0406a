# Clean sees all classes at once: an image found in two classes is ambiguous and
# quarantined from both. Split follows in the same group (small CPU jobs).


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


rule split:
    input:
        L.clean_manifest,
    output:
        L.splits_csv,
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
