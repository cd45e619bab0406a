from pathlib import Path

from convscope.entry import job, model_job

with job(snakemake, backend=snakemake.params.backend):
    from convscope.analysis.run import analyse_model

    analyse_model(**model_job(snakemake, Path(snakemake.output.index).parent))
