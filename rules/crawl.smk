# One job per class (target classes and pretrain's source classes). Images and the class's ledger (manifest.csv) accumulate in
# results/raw/{cls}/ across runs and are never deleted; the job's declared
# output is a summary, so re-running never removes what was downloaded.


rule crawl:
    output:
        L.crawl_summary("{cls}"),
    log:
        L.log("crawl", "{cls}"),
    benchmark:
        L.benchmark("crawl", "{cls}")
    conda:
        "../envs/data.yaml"
    threads: lambda wc: cfg.crawl_cores(config, wc.cls)
    params:
        options=lambda wc: cfg.crawl_params(config, wc.cls),
        # A folder source's listing (names, sizes, mtimes): files added there rerun the crawl,
        # which imports only the new ones.
        listing=lambda wc: crawl_listing(wc.cls),
    script:
        "../scripts/crawl.py"
