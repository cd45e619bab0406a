# Clean sees all classes at once: an image found in two classes is ambiguous and
# quarantined from both. Split follows in the same group (small CPU jobs).


rule clean:
    input:
        [L.crawl_summary(c) for c in CLASSES],
    output:
        L.clean_manifest,
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
        options=config["clean"],
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
