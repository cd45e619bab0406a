from pathlib import Path

from convscope.data.prepare import prepare
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    prepare(
        Path(snakemake.input.splits),
        Path(snakemake.params.raw),
        snakemake.params.classes,
        int(snakemake.wildcards.size),
        snakemake.params.options,
        Path(snakemake.output[0]).parent,
        threads=snakemake.threads,
    )
