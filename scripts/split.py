from pathlib import Path

from convscope.data.split import split
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    split(
        Path(snakemake.input[0]),
        snakemake.params.options,
        snakemake.params.seed,
        Path(snakemake.output[0]),
    )
