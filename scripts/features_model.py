from convscope.entry import job

p = snakemake.params.features
with job(snakemake, backend=p["backend"]):
    from convscope.training.features import head_model

    head_model(
        head_path=snakemake.input.head,
        out_path=snakemake.output.model,
        backbone=p["backbone"],
        options=p["options"],
        input_size=p["input_size"],
        num_classes=snakemake.params.num_classes,
        backend=p["backend"],
        seed=p["seed"],
    )
