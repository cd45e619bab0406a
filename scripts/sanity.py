from convscope.entry import job

with job(snakemake, backend=snakemake.params.backend):
    from convscope.training.sanity import Top5Settings, imagenet_top5

    imagenet_top5(
        images=snakemake.input.images,
        index_csv=snakemake.input.index,
        out_csv=snakemake.output[0],
        settings=Top5Settings(
            backbone=snakemake.wildcards.backbone,
            options=snakemake.params.options,
            backend=snakemake.params.backend,
            n_images=snakemake.params.n_images,
        ),
        threads=snakemake.threads,
    )
