from pathlib import Path

from convscope.data.crawl import crawl_class
from convscope.entry import job

with job(snakemake):
    crawl_class(
        cls=snakemake.wildcards.cls,
        options=snakemake.params.options,
        out_dir=Path(snakemake.output[0]).parent,
        summary_path=Path(snakemake.output[0]),
    )
