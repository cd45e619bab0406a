from pathlib import Path

from convscope import warm
from convscope.training.run import JobOptions

train = snakemake.config["train"]
# A fork of a process that has Keras imported already (config train.warm_start).
warm.call(
    "convscope.training.run:train_job",
    dict(
        log_path=snakemake.log[0],
        prepared_dir=Path(snakemake.input.train_images).parent,
        out_dir=Path(snakemake.output.metrics).parent,
        job=JobOptions(
            threads=snakemake.threads,
            n_gpus=snakemake.resources.get("gpu", 0),
            jobs_per_gpu=train["jobs_per_gpu"],
        ),
        **snakemake.params.run,
    ),
    backend=snakemake.params.run["backend"],
    enabled=train["warm_start"],
)
