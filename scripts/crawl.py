from pathlib import Path

from convscope.data.crawl import crawl_class
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    crawl_class(
        snakemake.wildcards.cls,
        snakemake.params.options,
        Path(snakemake.output[0]).parent,
        Path(snakemake.output[0]),
    )
