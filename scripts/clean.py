from pathlib import Path

from convscope.data.clean import Memory, clean
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    clean(
        Path(snakemake.input.raw[0]).parent.parent,
        snakemake.params.classes,
        snakemake.params.options,
        Path(snakemake.output[0]),
        # The output is flagged update(): Snakemake leaves the last manifest in place, and its
        # decisions stand for the files it already listed (splits never move).
        Memory(
            prior=Path(snakemake.output[0]), review=Path(snakemake.input.review[0]) if snakemake.input.review else None
        ),
    )
