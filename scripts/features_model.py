from convscope.logs import job_log

with job_log(snakemake.log[0]):
    from convscope.training.features import head_model

    p = snakemake.params.features
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
