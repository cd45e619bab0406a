from pathlib import Path

from convscope.data.prepare import PrepareJob, Source, prepare
from convscope.entry import job

with job(snakemake):
    prepare(
        Source(Path(snakemake.params.split_list), snakemake.params.raw, snakemake.params.classes),
        size=int(snakemake.wildcards.size),
        options=snakemake.params.options,
        out_dir=Path(snakemake.output[0]).parent,
        job=PrepareJob(threads=snakemake.threads, splits=(snakemake.wildcards.split,)),
    )
