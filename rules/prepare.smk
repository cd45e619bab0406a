# One job per distinct input size, shared by every backbone of that size.


rule prepare:
    input:
        splits=L.splits_csv,
    output:
        L.prepared_files("{size}"),
    log:
        L.log("prepare", "{size}"),
    benchmark:
        L.benchmark("prepare", "{size}")
    conda:
        "../envs/data.yaml"
    # Threads decode images; they do not change the arrays, so they are no param.
    threads: config["prepare"]["threads"]
    resources:
        mem_mb=4000,
    params:
        raw=L.raw_dir,
        classes=CLASSES,
        options={"resize": config["prepare"]["resize"]},
    script:
        "../scripts/prepare.py"
