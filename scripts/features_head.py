from pathlib import Path

from convscope.logs import job_log

with job_log(snakemake.log[0]):
    from convscope.training.features import fit_head

    fit_head(
        features_dir=Path(snakemake.input.info).parent,
        prepared_dir=Path(snakemake.input.labels[0]).parent,
        out_dir=Path(snakemake.output.metrics).parent,
        **snakemake.params.head,
    )
