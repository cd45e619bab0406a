from pathlib import Path

from convscope.entry import job

with job(snakemake, backend=snakemake.params.run["backend"]):
    from convscope.training.run import train_run

    train_run(
        prepared_dir=Path(snakemake.input.train_images).parent,
        out_dir=Path(snakemake.output.metrics).parent,
        threads=snakemake.threads,
        n_gpus=snakemake.resources.get("gpu", 0),
        **snakemake.params.run,
    )
