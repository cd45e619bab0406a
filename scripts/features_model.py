from convscope.entry import job

with job(snakemake, backend=snakemake.params.features["backend"]):
    from convscope.training.features import FeatureSettings, head_model

    head_model(
        head_path=snakemake.input.head,
        out_path=snakemake.output.model,
        features=FeatureSettings(**snakemake.params.features),
        num_classes=snakemake.params.num_classes,
    )
