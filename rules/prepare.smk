# One job per distinct input size, shared by every backbone of that size.


rule prepare:
    input:
        splits=f"{R}/clean/splits.csv",
    output:
        prepared_files("{{size}}"),
    log:
        f"{R}/logs/prepare/{{size}}.log",
    benchmark:
        f"{R}/benchmarks/prepare/{{size}}.tsv"
    conda:
        "../envs/data.yaml"
    # Threads decode images; they do not change the arrays, so they are no param.
    threads: config["prepare"]["threads"]
    resources:
        mem_mb=4000,
    params:
        raw=f"{R}/raw",
        classes=CLASSES,
        options={"resize": config["prepare"]["resize"]},
    script:
        "../scripts/prepare.py"
