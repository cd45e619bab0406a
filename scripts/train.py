from pathlib import Path

from convscope.entry import job_options, warm_job

# job() in a fork of a process that has Keras imported already (config train.warm_start).
warm_job(
    snakemake,
    "convscope.training.run:train_run",
    dict(
        prepared_dir=Path(snakemake.input.train_images).parent,
        out_dir=Path(snakemake.output.fit).parent,
        job=job_options(snakemake),
        **snakemake.params.run,
    ),
    backend=snakemake.params.run["backend"],
    enabled=snakemake.config["train"]["warm_start"],
)
