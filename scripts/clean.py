from pathlib import Path

from convscope.data.clean import clean
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    clean(
        Path(snakemake.input[0]).parent.parent,
        snakemake.params.classes,
        snakemake.params.options,
        Path(snakemake.output[0]),
    )
