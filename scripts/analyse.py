from pathlib import Path

from convscope import backend
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    # Before anything imports Keras: the backend is read once, at first import.
    backend.select(snakemake.params.backend, threads=snakemake.threads)
    from convscope.analysis.run import analyse_model

    analyse_model(
        Path(snakemake.input.model),
        Path(snakemake.input.test[0]).parent,
        Path(snakemake.input.model).parent,
        Path(snakemake.output.index).parent,
        snakemake.params.classes,
        snakemake.params.options,
        backbone=snakemake.wildcards.backbone,
        fresh=True,
        backbone_options=snakemake.params.backbone_options,
    )
