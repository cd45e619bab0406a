from pathlib import Path

from convscope.data.clean import clean
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    clean(
        Path(snakemake.input[0]).parent.parent,
        snakemake.params.classes,
        snakemake.params.options,
        Path(snakemake.output[0]),
        # The output is flagged update(): Snakemake leaves the last manifest in place, and its
        # decisions stand for the files it already listed (splits never move).
        prior=Path(snakemake.output[0]),
    )
