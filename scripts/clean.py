from pathlib import Path

from convscope.data.clean import clean
from convscope.entry import job

with job(snakemake):
    clean(
        raw_root=Path(snakemake.input[0]).parent.parent,  # raw/ holding each class's crawl.json
        classes=snakemake.params.classes,
        options=snakemake.params.options,
        out_csv=Path(snakemake.output[0]),
    )
