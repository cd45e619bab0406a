from pathlib import Path

from convscope.data.prepare import prepare
from convscope.entry import job

with job(snakemake):
    prepare(
        splits_csv=Path(snakemake.params.split_list),
        raw_root=Path(snakemake.params.raw),
        classes=snakemake.params.classes,
        size=int(snakemake.wildcards.size),
        options=snakemake.params.options,
        out_dir=Path(snakemake.output[0]).parent,
        threads=snakemake.threads,
        splits=(snakemake.wildcards.split,),
    )
