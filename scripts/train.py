from pathlib import Path

from convscope.entry import warm_job
from convscope.training.run import JobOptions

# job() in a fork of a process that has Keras imported already (config train.warm_start).
warm_job(
    snakemake,
    "convscope.training.run:train_run",
    dict(
        prepared_dir=Path(snakemake.input.train_images).parent,
        out_dir=Path(snakemake.output.fit).parent,
        job=JobOptions(
            threads=snakemake.threads,
            n_gpus=snakemake.resources.get("gpu", 0),
            jobs_per_gpu=snakemake.config["train"]["jobs_per_gpu"],
        ),
        **snakemake.params.run,
    ),
    backend=snakemake.params.run["backend"],
    enabled=snakemake.config["train"]["warm_start"],
)
