# Clean sees all classes at once: an image found in two classes is ambiguous and
# quarantined from both. Split follows in the same group (small CPU jobs).


rule clean:
    input:
        raw=expand(f"{R}/raw/{{cls}}/crawl.json", cls=CLASSES),
        # The user's decisions (config clean.review): editing the file reruns clean.
        review=[config["clean"]["review"]] if config["clean"]["review"] else [],
    output:
        # update(): not removed before the job runs; clean reads it as the prior decisions.
        update(f"{R}/clean/manifest.csv"),
    log:
        f"{R}/logs/clean.log",
    benchmark:
        f"{R}/benchmarks/clean.tsv"
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
        f"{R}/clean/manifest.csv",
    output:
        f"{R}/clean/splits.csv",
    log:
        f"{R}/logs/split.log",
    benchmark:
        f"{R}/benchmarks/split.tsv"
    group:
        "data"
    conda:
        "../envs/data.yaml"
    params:
        options=config["split"],
        seed=config["seed"],
    script:
        "../scripts/split.py"
