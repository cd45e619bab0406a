from pathlib import Path

from convscope.entry import job, model_job

with job(snakemake, backend=snakemake.params.backend):
    from convscope.analysis.probe import probe_model

    probe_model(**model_job(snakemake, Path(snakemake.output.cka).parent))
