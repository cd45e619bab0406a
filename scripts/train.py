from pathlib import Path

from convscope.entry import job, job_options

with job(snakemake, backend=snakemake.params.run["backend"]):
    from convscope.training.run import train_run

    train_run(
        prepared_dir=Path(snakemake.input.train_images).parent,
        out_dir=Path(snakemake.output.fit).parent,
        job=job_options(snakemake),
        **snakemake.params.run,
    )
