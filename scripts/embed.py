from pathlib import Path

from convscope.logs import job_log

with job_log(snakemake.log[0]):
    from convscope.training.features import compute_embeddings

    compute_embeddings(
        prepared_dir=Path(snakemake.input.images[0]).parent,
        out_dir=Path(snakemake.output.info).parent,
        threads=snakemake.threads,
        **snakemake.params.features,
    )
